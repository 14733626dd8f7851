"""The local SageMaker service's downloads (s3_transfer.download_prefix): an S3 prefix into a job's folder, each key
a file under it, as SageMaker's File mode lays a channel out; a key that would land outside the folder is refused."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from reviewtune.local.sagemaker import s3_transfer

BUCKET = "reviewtune-local"


@pytest.fixture
def s3(monkeypatch):
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def test_every_key_under_the_prefix_becomes_a_file_under_the_folder(s3, tmp_path):
    s3.put_object(Bucket=BUCKET, Key="runs/r/data/train/train.tsv", Body=b"a")
    s3.put_object(Bucket=BUCKET, Key="runs/r/data/train/more/part.tsv", Body=b"b")
    s3.put_object(Bucket=BUCKET, Key="runs/r/data/validation/validation.tsv", Body=b"c")
    folder = tmp_path / "input" / "data" / "train"

    written = s3_transfer.download_prefix(s3, f"s3://{BUCKET}/runs/r/data/train/", folder)

    assert sorted(path.relative_to(folder).as_posix() for path in written) == ["more/part.tsv", "train.tsv"]
    assert (folder / "more" / "part.tsv").read_bytes() == b"b"


@pytest.mark.parametrize("after_prefix", ["../../../../escaped.txt", "{tmp_path}/escaped.txt"])  # the latter: "//tmp/…"
def test_a_key_that_would_land_outside_the_folder_is_refused_and_nothing_is_written_there(s3, tmp_path, after_prefix):
    s3.put_object(Bucket=BUCKET, Key="runs/r/data/train/" + after_prefix.format(tmp_path=tmp_path), Body=b"x")
    folder = tmp_path / "job" / "input" / "data" / "train"

    with pytest.raises(ValueError, match="names no file under the input's folder"):
        s3_transfer.download_prefix(s3, f"s3://{BUCKET}/runs/r/data/train/", folder)

    assert not list(tmp_path.rglob("escaped.txt"))
