"""Files that must be accepted, whatever their name, encoding of the key in the event, compression or line endings."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
from urllib.parse import quote_plus

import boto3
import pytest

from reviewtune.core import names
from reviewtune.core.dataset import review_key
from tests.functional.test_bad_inputs import raw_event
from tests.functional.test_start_tuning import TUNING_ARN, SageMakerRecorder
from tests.support.aws import REGION, load_handler
from tests.support.bad_inputs import good_file


@pytest.fixture
def start_tuning(stack):
    return load_handler("start_tuning")


def run(start_tuning, event, lambda_context) -> dict:
    with SageMakerRecorder(start_tuning) as sm:
        sm.stubber.add_response("create_hyper_parameter_tuning_job", {"HyperParameterTuningJobArn": TUNING_ARN})
        result = start_tuning.handler(event, lambda_context)
    return result


def split_texts(stack, run_id: str) -> dict[str, list[tuple[str, str]]]:
    s3 = boto3.client("s3", region_name=REGION)
    out = {}
    for split in names.SPLITS:
        body = s3.get_object(Bucket=stack.bucket, Key=names.split_key(run_id, split))["Body"].read().decode()
        out[split] = [(r["sentiment"], r["review_body"]) for r in csv.DictReader(io.StringIO(body), delimiter="\t")]
    return out


KEYS = [
    "incoming/reviews + notes (1).tsv",
    "incoming/100% real/a b&c=d.csv",
    "incoming/équipe/avis ✓ été 2026.TSV",
    "incoming/a/b/c/d/e/f/2024-08-08T14:03:40.532432 [export].Csv",
    "incoming/plus+only.tsv",
]


@pytest.mark.parametrize("encoding", ["raw", "url-encoded"])
@pytest.mark.parametrize("key", KEYS)
def test_any_key_in_either_event_encoding_starts_its_run(stack, start_tuning, lambda_context, key, encoding):
    data = good_file(20) if key.lower().endswith(".tsv") else good_file(20).replace(b"\t", b",")
    event = raw_event(stack, key, data)
    if encoding == "url-encoded":  # S3's classic notification encoding
        event["detail"]["object"]["key"] = quote_plus(key, safe="/")
    result = run(start_tuning, event, lambda_context)
    assert result["status"] == "TUNING", result
    detail = event["detail"]["object"]
    identity = names.object_identity(stack.bucket, key, detail["version-id"], detail["etag"])
    assert result["run_id"] == names.tuning_job_name("reviewtune", identity)  # the raw key is the identity
    item = stack.run(result["run_id"])
    assert item["source"]["key"] == key and item["dataset"] == key.removeprefix("incoming/")


def test_a_plus_in_a_raw_key_is_a_plus_even_when_the_decoded_name_exists(stack, start_tuning, lambda_context):
    s3 = boto3.client("s3", region_name=REGION)
    s3.put_object(Bucket=stack.bucket, Key="incoming/a b.tsv", Body=b"not the file of this event")
    event = raw_event(stack, "incoming/a+b.tsv", good_file(20))
    result = run(start_tuning, event, lambda_context)
    assert result["status"] == "TUNING"
    assert stack.run(result["run_id"])["source"]["key"] == "incoming/a+b.tsv"


@pytest.mark.parametrize(
    ("key", "file_format", "transform"),
    [
        ("incoming/packed.TSV.GZ", ".tsv.gz", gzip.compress),
        ("incoming/windows.csv", ".csv", lambda d: b"\xef\xbb\xbf" + d.replace(b"\t", b",").replace(b"\n", b"\r\n")),
        ("incoming/windows.csv.gz", ".csv.gz", lambda d: gzip.compress(b"\xef\xbb\xbf" + d.replace(b"\t", b",").replace(b"\n", b"\r\n"))),
    ],
)
def test_gzip_bom_and_crlf_are_accepted(stack, start_tuning, lambda_context, key, file_format, transform):
    data = transform(good_file(40))
    result = run(start_tuning, raw_event(stack, key, data), lambda_context)
    assert result["status"] == "TUNING", result
    assert result["rows"] == {"train": 108, "validation": 6, "test": 6}
    summary = stack.run(result["run_id"])["data"]["summary"]
    assert summary["content_sha256"] == hashlib.sha256(data).hexdigest()
    assert summary["file_format"] == file_format
    texts = split_texts(stack, result["run_id"])
    assert all(not text.startswith("\ufeff") and "\r" not in text for rows in texts.values() for _, text in rows)


def test_quoted_newlines_delimiters_and_quotes_are_kept_in_the_review(stack, start_tuning, lambda_context):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["Rating", "Title", "Review Text"])
    for rating in (1, 2, 3, 4, 5):
        for i in range(12):
            writer.writerow([rating, "t, with comma", f'Line one, "quoted"\nline two {rating} {i}'])
    result = run(start_tuning, raw_event(stack, "incoming/kaggle shape.csv", out.getvalue().encode()), lambda_context)
    assert result["status"] == "TUNING", result
    texts = [text for rows in split_texts(stack, result["run_id"]).values() for _, text in rows]
    assert 'Line one, "quoted" line two 3 0' in texts


def test_reviews_also_in_train_are_removed_from_validation_and_test(stack, start_tuning, lambda_context):
    # The file's own split puts some training reviews in validation and test again, in other letter case and spacing.
    rows = [f"{label}\treview {i} of class {label}\ttrain\n" for label in (-1, 0, 1) for i in range(40)]
    held = [f"{label}\theld-out {split} review {i} of class {label}\t{split}\n" for label in (-1, 0, 1)
            for i in range(5) for split in ("validation", "test")]
    twins = [f"{label}\tREVIEW  {i} of CLASS {label}\t{split}\n" for label in (-1, 0, 1) for i in range(0, 8, 2)
             for split in ("validation", "test")]
    data = b"sentiment\treview_body\tsplit\n" + "".join(rows + held + twins).encode()
    result = run(start_tuning, raw_event(stack, "incoming/leaky.tsv", data), lambda_context)
    assert result["status"] == "TUNING", result
    texts = split_texts(stack, result["run_id"])
    train = {review_key(t) for _, t in texts["train"]}
    held_out = [t for split in ("validation", "test") for _, t in texts[split]]
    assert held_out and not any(review_key(t) in train for t in held_out)
    summary = stack.run(result["run_id"])["data"]["summary"]
    assert summary["leakage_removed"] == len(twins)
    assert sum(summary["rows"].values()) + summary["leakage_removed"] == len(rows) + len(held) + len(twins)


def test_a_review_labelled_two_ways_is_left_out_of_every_split_and_counted(stack, start_tuning, lambda_context):
    rows = [f"{label}\treview {i} of class {label}\n" for label in (-1, 0, 1) for i in range(60)]
    twins = [f"{-label if label else 1}\tREVIEW  {i} of CLASS {label}\n" for label in (-1, 0, 1) for i in range(0, 60, 2)]
    data = b"sentiment\treview_body\n" + "".join(rows + twins).encode()
    result = run(start_tuning, raw_event(stack, "incoming/two-ways.tsv", data), lambda_context)
    assert result["status"] == "TUNING", result
    texts = [t for split in split_texts(stack, result["run_id"]).values() for _, t in split]
    assert not any(review_key(t) in {review_key(twin.split("\t")[1]) for twin in twins} for t in texts)
    summary = stack.run(result["run_id"])["data"]["summary"]
    assert summary["conflicting_removed"] == 2 * len(twins) and summary["leakage_removed"] == 0
    assert sum(summary["rows"].values()) == len(rows) - len(twins)
