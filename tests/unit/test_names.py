from __future__ import annotations

import unicodedata
from urllib.parse import quote_plus

import pytest

from reviewtune.core import formats, names
from reviewtune.core.errors import ConfigError


@pytest.mark.parametrize(
    "key",
    [
        "incoming/a.tsv",
        "incoming/" + "very-long-folder-name/" * 40 + "reviews.tsv",
        "incoming/with spaces/Ümlaut review ✓.csv",
        "incoming/" + "x" * 900 + ".tsv",
    ],
)
def test_tuning_job_name_is_valid_for_sagemaker_whatever_the_key(key):
    name = names.tuning_job_name("reviewtune", names.object_identity("bucket", key, "v1", None))
    assert len(name) <= 32
    assert names.TUNING_JOB_NAME_PATTERN.match(name)
    assert name.startswith("reviewtune-")


def test_same_object_version_gives_same_name_and_another_version_another():
    one = names.tuning_job_name("rt", names.object_identity("b", "incoming/a.tsv", "v1", "e"))
    again = names.tuning_job_name("rt", names.object_identity("b", "incoming/a.tsv", "v1", "e"))
    other = names.tuning_job_name("rt", names.object_identity("b", "incoming/a.tsv", "v2", "e"))
    assert one == again != other


def test_etag_identifies_the_object_when_the_bucket_has_no_versions():
    quoted = names.object_identity("b", "incoming/a.tsv", None, '"abc"')
    plain = names.object_identity("b", "incoming/a.tsv", None, "abc")
    assert quoted == plain


@pytest.mark.parametrize("prefix", ["", "UPPER", "has_underscore", "a--b", "-a", "thirteenchars"])
def test_invalid_prefixes_are_refused(prefix):
    with pytest.raises(ConfigError):
        names.tuning_job_name(prefix, "x")


def test_the_key_as_given_comes_before_its_url_decoded_form():
    assert names.key_candidates("incoming/summer+reviews%C3%A9+%282%29.tsv") == [
        "incoming/summer+reviews%C3%A9+%282%29.tsv",
        "incoming/summer reviewsé (2).tsv",
    ]
    assert names.key_candidates("incoming/plain-name.tsv") == ["incoming/plain-name.tsv"]
    assert names.key_candidates("incoming/a b (1) é.tsv") == ["incoming/a b (1) é.tsv"]


def test_an_encoded_key_longer_than_s3_allows_stands_only_for_its_decoded_form():
    stored = "incoming/" + "é" * 300 + ".tsv"  # 613 bytes; encoded, each é is %C3%A9: 1,813 bytes
    encoded = quote_plus(stored, safe="/")
    assert len(encoded.encode()) > names.S3_KEY_MAX_BYTES >= len(stored.encode())
    assert names.key_candidates(encoded) == [stored]
    at_limit = "incoming/" + "%25" * 337 + ".tsv"  # 1,024 bytes as given: it may exist, so it is tried first
    assert len(at_limit.encode()) == names.S3_KEY_MAX_BYTES
    assert names.key_candidates(at_limit) == [at_limit, "incoming/" + "%" * 337 + ".tsv"]
    both_too_long = quote_plus("incoming/" + "\u00e9" * 600 + ".tsv", safe="/")  # 1,213 bytes decoded
    assert names.key_candidates(both_too_long) == [both_too_long]  # none fits: the key as given, for an outcome


def test_evaluation_job_name_round_trips_to_the_run():
    run_id = names.tuning_job_name("reviewtune", "x")
    job = names.evaluation_job_name(run_id)
    assert len(job) <= 63 and names.JOB_NAME_PATTERN.match(job)
    assert names.run_id_of_evaluation_job(job) == run_id
    with pytest.raises(ValueError):
        names.run_id_of_evaluation_job(run_id)


@pytest.mark.parametrize(
    ("key", "size", "accepted"),
    [
        ("incoming/a.tsv", 10, True),
        ("incoming/a.CSV", 10, True),
        ("incoming/a.txt", 10, True),  # given an outcome: rejected for its type, not ignored
        ("incoming/empty.tsv", 0, True),  # rejected as empty
        ("incoming/team/", 0, False),  # folder marker
        ("incoming/team/", None, False),
        ("incoming/team/", 12, True),  # bytes under a folder-like key: rejected for its type, not ignored
        ("runs/a.tsv", 10, False),
    ],
)
def test_objects_given_an_outcome(key, size, accepted):
    assert names.is_accepted_key(key, size) is accepted


@pytest.mark.parametrize(
    ("key", "suffix"),
    [
        ("incoming/a.tsv", ".tsv"),
        ("incoming/a.Csv", ".csv"),
        ("incoming/a.TSV.GZ", ".tsv.gz"),
        ("incoming/a.csv.Gz", ".csv.gz"),
        ("incoming/a.gz", None),
        ("incoming/a.xlsx", None),
        ("incoming/a.tsv.zip", None),
    ],
)
def test_file_formats_in_any_letter_case(key, suffix):
    fmt = formats.file_format(key)
    assert (fmt.suffix if fmt else None) == suffix


def test_a_dataset_is_named_in_composed_unicode_and_a_rejected_copy_keeps_the_key_s_spelling():
    composed = "incoming/équipe/avis été.tsv"
    decomposed = unicodedata.normalize("NFD", composed)
    assert names.dataset_name(decomposed) == names.dataset_name(composed) == "équipe/avis été.tsv"
    assert names.normalize_dataset(unicodedata.normalize("NFD", "équipe/avis été.tsv")) == "équipe/avis été.tsv"
    assert names.rejected_key(decomposed) == "rejected/" + decomposed.removeprefix("incoming/")
    # NFC is not always shorter: a character excluded from composition decomposes, so the copy keeps the key's bytes
    kept = "incoming/\u0958.tsv"
    assert names.rejected_key(kept).encode() == b"rejected/" + kept.removeprefix("incoming/").encode()
    assert len(names.dataset_name(kept)) > len(kept.removeprefix("incoming/"))


def test_layout():
    assert names.split_key("r", "train") == "runs/r/data/train/train.tsv"
    assert names.rejected_key("incoming/team/a.tsv") == "rejected/team/a.tsv"
    assert names.parse_s3_uri("s3://b/k/x.json") == ("b", "k/x.json")


SAGEMAKER_TEXT_NAMES = [
    "team a/summer reviews (1).tsv",
    "équipe/avis, été #2 [final] ✓ & 50%!.csv",
    "tabs\tand\nnewlines\x00\ud800.tsv",
    "日本語 レビュー/１２３.tsv",
    "(x)" * 300,
    "",
]


@pytest.mark.parametrize("dataset", SAGEMAKER_TEXT_NAMES)
def test_sagemaker_text_matches_the_api_patterns_of_tag_values_and_model_metadata(dataset):
    import boto3
    import regex  # the API's \p{...} classes; `re` cannot read them

    model = boto3.client("sagemaker", region_name="us-east-1").meta.service_model
    tag_value = model.shape_for("TagValue").metadata
    metadata_value = model.shape_for("CustomerMetadataMap").value.metadata
    text = names.sagemaker_text(dataset)
    assert len(text) == min(len(dataset), tag_value["max"], metadata_value["max"])
    assert regex.fullmatch(tag_value["pattern"], text)
    assert regex.fullmatch(metadata_value["pattern"].removesuffix("${1,256}"), text)


def test_sagemaker_text_keeps_what_is_allowed_and_marks_each_refused_character():
    assert names.sagemaker_text("team a/summer reviews (1).tsv") == "team a/summer reviews _1_.tsv"
    assert names.sagemaker_text("Ümlaut_ü-1.2:3/4=5+6@7 ８") == "Ümlaut_ü-1.2:3/4=5+6@7 ８"
    assert names.sagemaker_text("a✓b,c", limit=3) == "a_b"


@pytest.mark.parametrize(
    "key",
    ["incoming/a.tsv", "incoming/" + "x" * 1003 + ".tsv", "incoming/" + "x" * 1004 + ".tsv",
     "incoming/" + "é" * 505 + ".tsv", "incoming/" + "✓" * 336 + "é.csv"],
)
def test_the_reason_of_a_rejected_file_has_a_key_s3_accepts_whatever_the_file_s_key(key):
    assert len(key.encode()) <= 1024
    reason = names.rejected_reason_key(key)
    assert len(reason.encode()) <= names.S3_KEY_MAX_BYTES and reason.endswith(".error.json")
    if len(key.encode()) + len(".error.json") <= 1024:
        assert reason == names.rejected_key(key) + ".error.json"
    else:  # cut, and told apart from another long key with the same beginning by a hash of the whole key
        assert names.rejected_key(key).startswith(reason.split("~")[0]) and len(reason.split("~")[0].encode()) > 990
        assert reason != names.rejected_reason_key(key[:-5] + "y.tsv")


def test_a_short_key_s_reason_sits_beside_its_copy():
    assert names.rejected_reason_key("incoming/team/a b.tsv") == "rejected/team/a b.tsv.error.json"
