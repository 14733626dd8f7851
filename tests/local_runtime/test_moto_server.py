"""The local runtime's moto server: what it changes in moto, and why."""

from __future__ import annotations

import gc
import os

import moto.s3.models

from tests.local_runtime.conftest import make_clients


def test_listing_versions_writes_no_copy_of_any_object_and_keeps_them_whole(moto_url, monkeypatch):
    """The local reconciler lists incoming/ every pass: moto alone wrote every object of the bucket (models
    included) to a new temporary file for each listing, and a long `local up` filled the disk."""
    buffers = []
    spooled = moto.s3.models.tempfile.SpooledTemporaryFile

    def counted(*args, **kwargs):
        buffer = spooled(*args, **kwargs)
        buffers.append(buffer)
        return buffer

    s3 = make_clients(moto_url)("s3")
    s3.create_bucket(Bucket="data-bucket")
    s3.put_bucket_versioning(Bucket="data-bucket", VersioningConfiguration={"Status": "Enabled"})
    model = os.urandom(3 * 2**20)
    s3.put_object(Bucket="data-bucket", Key="runs/r/model.tar.gz", Body=model)
    first = s3.put_object(Bucket="data-bucket", Key="incoming/a.tsv", Body=b"first")["VersionId"]
    second = s3.put_object(Bucket="data-bucket", Key="incoming/a.tsv", Body=b"second")["VersionId"]
    gone = s3.put_object(Bucket="data-bucket", Key="incoming/gone.tsv", Body=b"gone")["VersionId"]
    s3.delete_object(Bucket="data-bucket", Key="incoming/gone.tsv")

    monkeypatch.setattr(moto.s3.models.tempfile, "SpooledTemporaryFile", counted)
    for _ in range(3):
        listed = s3.list_object_versions(Bucket="data-bucket", Prefix="incoming/")
    everything = s3.list_object_versions(Bucket="data-bucket", MaxKeys=1)
    assert buffers == []

    assert [(v["Key"], v["VersionId"], v["IsLatest"], v["Size"]) for v in listed["Versions"]] == [
        ("incoming/a.tsv", second, True, 6),
        ("incoming/a.tsv", first, False, 5),
        ("incoming/gone.tsv", gone, False, 4),
    ]
    assert [(m["Key"], m["IsLatest"]) for m in listed["DeleteMarkers"]] == [("incoming/gone.tsv", True)]
    assert everything["IsTruncated"] and len(everything.get("Versions", []) + everything.get("DeleteMarkers", [])) == 1

    del listed, everything
    gc.collect()  # the listed versions are gone: the stored objects' bytes are still there
    assert s3.get_object(Bucket="data-bucket", Key="runs/r/model.tar.gz")["Body"].read() == model
    assert s3.get_object(Bucket="data-bucket", Key="incoming/a.tsv", VersionId=first)["Body"].read() == b"first"
    assert s3.get_object(Bucket="data-bucket", Key="incoming/a.tsv")["Body"].read() == b"second"


def test_listing_versions_carries_keys_that_xml_cannot(moto_url):
    """botocore asks S3 for URL-encoded keys and decodes them; moto wrote the keys raw into its XML, so a key with an
    ESC character made every listing of its prefix answer 500 (the sweep, audit and overview with it)."""
    s3 = make_clients(moto_url)("s3")
    s3.create_bucket(Bucket="odd-names")
    s3.put_bucket_versioning(Bucket="odd-names", VersioningConfiguration={"Status": "Enabled"})
    odd = ["incoming/esc\x1b[31mred.tsv", "incoming/feed\x0c100%25 + more.tsv", "incoming/ok é.tsv"]
    for key in odd:
        s3.put_object(Bucket="odd-names", Key=key, Body=b"x")
    s3.delete_object(Bucket="odd-names", Key=odd[1])

    listed = s3.list_object_versions(Bucket="odd-names", Prefix="incoming/")
    assert sorted(v["Key"] for v in listed["Versions"]) == sorted(odd)
    assert [m["Key"] for m in listed["DeleteMarkers"]] == [odd[1]]
    assert listed["Prefix"] == "incoming/"

    seen, pages = [], s3.get_paginator("list_object_versions").paginate(
        Bucket="odd-names", Prefix="incoming/", Delimiter="\x1b", PaginationConfig={"PageSize": 1})
    for page in pages:  # the markers too, in the next request and in the answer
        seen += [v["Key"] for v in page.get("Versions", [])] + [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        assert page.get("Delimiter") == "\x1b"
    assert sorted(seen) == sorted(["incoming/esc\x1b", odd[1], odd[2]])


def test_a_key_with_line_breaks_reaches_its_object(moto_url):
    """moto routed S3's object requests by a ``.+`` that stops at a line break: a PUT of ``incoming/a\nb.tsv`` answered
    a bare 404, so locally such a file could neither be dropped nor read by its run."""
    s3 = make_clients(moto_url)("s3")
    s3.create_bucket(Bucket="line-breaks")
    s3.put_bucket_versioning(Bucket="line-breaks", VersioningConfiguration={"Status": "Enabled"})
    for key in ("incoming/a\nb.tsv", "incoming/c\r\nd.tsv", "incoming/\n", "incoming/plain.tsv"):
        version = s3.put_object(Bucket="line-breaks", Key=key, Body=key.encode())["VersionId"]
        assert s3.get_object(Bucket="line-breaks", Key=key)["Body"].read() == key.encode()
        assert s3.head_object(Bucket="line-breaks", Key=key, VersionId=version)["ContentLength"] == len(key.encode())
        copied = s3.copy_object(Bucket="line-breaks", Key=key + ".copy",
                                CopySource={"Bucket": "line-breaks", "Key": key, "VersionId": version})
        assert copied["VersionId"] != version
    listed = {v["Key"] for v in s3.list_object_versions(Bucket="line-breaks", Prefix="incoming/")["Versions"]}
    assert {"incoming/a\nb.tsv", "incoming/c\r\nd.tsv.copy", "incoming/\n"} <= listed
    s3.delete_object(Bucket="line-breaks", Key="incoming/a\nb.tsv")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="line-breaks", Prefix="incoming/a")["Contents"]] == [
        "incoming/a\nb.tsv.copy"]
