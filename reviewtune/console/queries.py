"""The questions the commands ask, with boto3 only (no sagemaker SDK, no pandas)."""

from __future__ import annotations

import getpass
import heapq
import mimetypes
import re
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import BotoCoreError, ClientError

from reviewtune.core import names
from reviewtune.core.champion import get_champion, list_champions
from reviewtune.core.formats import accepted_formats_text, file_format
from reviewtune.core.runs import (
    DATASET_INDEX,
    STATUS_INDEX,
    RunsRepository,
    RunStatus,
    from_item,
    now_iso,
    parse_iso,
)
from reviewtune.core.trial_facts import describe_training_job, early_stopped, epochs_run, planned_steps_pct

CONTENT_TYPES = {".tsv": "text/tab-separated-values", ".csv": "text/csv"}
# How far this machine's clock may be ahead of the functions': a run made this long before the upload was sent is
# still that upload's (find_run, in a bucket without versioning)
CLOCK_SLACK = timedelta(minutes=5)


def _query(table: Any, limit: int, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """Items of one index query, newest first, page by page, at most ``limit`` of them."""
    seen = 0
    filtered = "FilterExpression" in kwargs  # DynamoDB applies Limit before the filter: ask for full pages then
    while seen < limit:
        response = table.query(ScanIndexForward=False, Limit=limit if filtered else limit - seen, **kwargs)
        for item in response["Items"]:
            yield from_item(item)
            seen += 1
            if seen >= limit:
                return
        if "LastEvaluatedKey" not in response:
            return
        kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def list_runs(table: Any, dataset: str | None = None, status: str | None = None, limit: int = 20) -> list[dict]:
    """Runs newest first, always through an index (never a table scan).

    With a dataset: the by_dataset index (a status filter on top). With a status only: by_status. With neither:
    one by_status query per status, each for at most ``limit`` items, merged by created_at: nine small queries whose
    cost is bounded by 9 x limit items whatever the table's size, where a scan would read the whole table to sort it.
    """
    if dataset is not None:
        extra = {"FilterExpression": Attr("status").eq(status)} if status else {}
        key = Key("dataset").eq(names.normalize_dataset(dataset))
        return list(_query(table, limit, IndexName=DATASET_INDEX, KeyConditionExpression=key, **extra))
    statuses = [status] if status else [s.value for s in RunStatus]
    return _newest(
        [list(_query(table, limit, IndexName=STATUS_INDEX, KeyConditionExpression=Key("status").eq(s))) for s in statuses],
        limit)


def runs_since(table: Any, since: str, limit: int) -> tuple[list[dict], bool]:
    """Every run created at ``since`` (ISO 8601, as created_at is written) or later, newest first, and whether that is
    all of them: one by_status query per status with created_at in its key condition, each for at most ``limit``
    items (False when a status had more), so the cost is bounded by the window, whatever the table holds before it."""
    streams = [
        list(_query(table, limit + 1, IndexName=STATUS_INDEX,
                    KeyConditionExpression=Key("status").eq(status.value) & Key("created_at").gte(since)))
        for status in RunStatus
    ]
    complete = all(len(stream) <= limit for stream in streams)
    kept = [stream[:limit] for stream in streams]
    return _newest(kept, sum(map(len, kept))), complete


def _newest(streams: list[list[dict]], limit: int) -> list[dict]:
    """The ``limit`` newest runs of several lists each newest first, merged by created_at."""
    merged = heapq.merge(*streams, key=lambda item: item.get("created_at", ""), reverse=True)
    return [item for _, item in zip(range(limit), merged, strict=False)]


MAX_FOLDER_DATASETS = 100  # datasets of one folder whose runs `runs list --dataset FOLDER` reads
MAX_FOLDER_KEYS = 10_000  # object versions listed under the folder to find them


def datasets_under(s3: Any, bucket: str, folder: str) -> tuple[list[str], bool]:
    """The datasets whose files lie under ``folder`` (below incoming/), from the versions S3 keeps there
    (ListObjectVersions: a file deleted since still counts while its versions are kept), sorted; at most
    ``MAX_FOLDER_DATASETS``, after at most ``MAX_FOLDER_KEYS`` versions: True when there may be more."""
    found: set[str] = set()
    read = 0
    # a key written with decomposed accents (macOS) lies under the folder too: both spellings listed
    for spelling in names.key_spellings(names.normalize_dataset(folder).strip("/") + "/"):
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket,
                                                                      Prefix=names.INCOMING_PREFIX + spelling):
            for version in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
                read += 1
                if not version["Key"].endswith("/"):  # a folder marker is no file
                    found.add(names.dataset_name(version["Key"]))
            if len(found) > MAX_FOLDER_DATASETS or read >= MAX_FOLDER_KEYS:
                return sorted(found)[:MAX_FOLDER_DATASETS], True
    return sorted(found), False


def list_runs_of(table: Any, datasets: list[str], status: str | None = None, limit: int = 20) -> list[dict]:
    """The runs of several datasets, newest first: one by_dataset query each, merged by created_at."""
    return _newest([list_runs(table, dataset, status, limit) for dataset in datasets], limit)


PREFIX_MIN_CHARS = 4
PREFIX_RUNS_READ = 200  # per status, newest first: a prefix names a recent run


def runs_with_prefix(table: Any, prefix: str, limit: int = PREFIX_RUNS_READ) -> list[str]:
    """Run ids that start with ``prefix``, or whose digest does (``5e71`` for ``reviewtune-5e71...``), among the
    ``limit`` newest runs of each status (by_status, run ids only), newest first: the id a person typed the start of,
    as git takes a commit's. Bounded like ``list_runs``: no table scan."""
    found: list[tuple[str, str]] = []
    for status in RunStatus:
        for item in _query(table, limit, IndexName=STATUS_INDEX, KeyConditionExpression=Key("status").eq(status.value),
                           ProjectionExpression="run_id, created_at"):
            run_id = str(item["run_id"])
            if run_id.startswith(prefix) or run_id.rsplit("-", 1)[-1].startswith(prefix):
                found.append((str(item.get("created_at", "")), run_id))
    return [run_id for _, run_id in sorted(found, reverse=True)]


def _float(value: str) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def training_job_summaries(sagemaker: Any, tuning_job_name: str) -> list[dict[str, Any]]:
    """Every trial's summary (a tuning job may have up to 500; a page holds 100)."""
    summaries: list[dict[str, Any]] = []
    request: dict[str, Any] = {"HyperParameterTuningJobName": tuning_job_name, "MaxResults": 100}
    while True:  # the SDK's own loop: MaxResults=100, NextToken while a page had jobs
        page = sagemaker.list_training_jobs_for_hyper_parameter_tuning_job(**request)
        summaries.extend(page["TrainingJobSummaries"])
        if "NextToken" not in page or not page["TrainingJobSummaries"]:
            return summaries
        request["NextToken"] = page["NextToken"]


def trial_rows(sagemaker: Any, tuning_job_name: str, *, describe: bool = True) -> list[dict[str, Any]]:
    """One row per training job, with the columns and values of the sagemaker SDK's
    ``HyperparameterTuningJobAnalytics(name).dataframe()`` (tuned hyperparameters as floats where they parse,
    TrainingJobName, TrainingJobStatus, FinalObjectiveValue, TrainingStartTime, TrainingEndTime,
    TrainingElapsedTimeSeconds), plus Epochs (epochs run, from DescribeTrainingJob), PlannedStepsPct (the share of its
    planned steps it trained: under 100 when its time limit cut them; None before train.py printed it),
    EarlyStopped, FailureReason for a trial that failed (SageMaker's words), and Deleted for a training job SageMaker no
    longer describes (a person deleted it)."""
    tuning_status = sagemaker.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=tuning_job_name)[
        "HyperParameterTuningJobStatus"
    ]
    rows = []
    for summary in training_job_summaries(sagemaker, tuning_job_name):
        row: dict[str, Any] = {k: _float(v) for k, v in summary["TunedHyperParameters"].items()}
        row["TrainingJobName"] = summary["TrainingJobName"]
        row["TrainingJobStatus"] = summary["TrainingJobStatus"]
        row["FinalObjectiveValue"] = summary.get("FinalHyperParameterTuningJobObjectiveMetric", {}).get("Value")
        start, end = summary.get("TrainingStartTime"), summary.get("TrainingEndTime")
        row["TrainingStartTime"] = start
        row["TrainingEndTime"] = end
        if start and end:
            row["TrainingElapsedTimeSeconds"] = (end - start).total_seconds()
        if "TrainingJobDefinitionName" in summary:
            row["TrainingJobDefinitionName"] = summary["TrainingJobDefinitionName"]
        secondary = None
        if describe:
            description = describe_training_job(sagemaker, summary["TrainingJobName"])
            if description is None:  # deleted: what the tuning job's listing says of it
                row["Deleted"] = True
            else:
                row["Epochs"] = epochs_run(description)
                row["PlannedStepsPct"] = planned_steps_pct(description)
                secondary = description.get("SecondaryStatus")
        row["EarlyStopped"] = early_stopped(summary["TrainingJobStatus"], tuning_status, secondary)
        if summary.get("FailureReason"):
            row["FailureReason"] = summary["FailureReason"]
        rows.append(row)
    return rows


def jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value


def report_location(item: dict[str, Any], bucket: str) -> tuple[str, str]:
    uri = item.get("results", {}).get("report_uri") or names.s3_uri(bucket, names.report_key(item["run_id"]))
    return names.parse_s3_uri(uri)


def fetch_report(s3: Any, item: dict[str, Any], bucket: str, out: Path) -> Path:
    """Download the run's HTML report to ``out/<run_id>.html``."""
    source_bucket, key = report_location(item, bucket)
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{item['run_id']}.html"
    s3.download_file(source_bucket, key, str(target))
    return target


def drop_key(path: Path, dataset: str | None) -> str:
    """incoming/<dataset>: the file's name, or the dataset given (a folder when it has no .tsv/.csv suffix)."""
    given = dataset is not None
    if dataset is None:
        dataset = path.name
    _refuse_padding(dataset, given)
    dataset = dataset.strip("/")
    if given and dataset.split("/")[0] == names.INCOMING_PREFIX.rstrip("/"):
        meant = dataset.split("/", 1)[1] if "/" in dataset else ""
        raise ValueError(f"the dataset {dataset!r} " + ("starts with" if meant else "is")
                         + f" {names.INCOMING_PREFIX}, where every dataset is: it would make the dataset "
                         f"{names.INCOMING_PREFIX}{dataset}"
                         + (f"; give {meant!r} for {names.INCOMING_PREFIX}{meant}" if meant else ""))
    if file_format(dataset) is None:  # a folder: the file's own name joins it
        _refuse_padding(path.name, given=False, folder=dataset)
        dataset = f"{dataset}/{path.name}"
    key = names.INCOMING_PREFIX + dataset
    if file_format(key) is None:
        raise ValueError(f"{path}: only {accepted_formats_text()} files are accepted")
    return key


# White space at either end of a name's part (any Unicode space but the information separators \x1c-\x1f, which are
# controls to a reader, not space)
_PADDING = re.compile(r"^[^\S\x1c-\x1f]+|[^\S\x1c-\x1f]+$")


def _refuse_padding(name: str, given: bool, folder: str = "") -> None:
    """White space pasted around a name (" team-a/r.tsv", "team-a/r.tsv "), or around one of its folders, would name
    another dataset than the one meant, or make a file's name a folder: refused, with the name meant when there is one
    (``folder``: the one ``--dataset`` named, which the file's name joins)."""
    parts = [_PADDING.sub("", part) for part in name.split("/")]
    if parts == name.split("/"):
        return
    meant = "/".join(part for part, was in zip(parts, name.split("/"), strict=True) if part or not was)
    suggestion = repr(f"{folder}/{meant}" if folder else meant) if meant.strip("/") else None
    if given:
        raise ValueError(f"the dataset {name!r} has white space around its name or a folder's, which would make it "
                         "another dataset" + (f": give {suggestion} if that is the one meant" if suggestion else ""))
    raise ValueError(f"the file's name {name!r} has white space around it, which would make it another dataset: "
                     "rename it" + (f", or give the dataset with --dataset {suggestion}" if suggestion else ""))


def upload(s3: Any, bucket: str, path: Path, key: str) -> dict[str, Any]:
    suffix = Path(key).suffix.lower()
    content_type = CONTENT_TYPES.get(suffix) or mimetypes.guess_type(key)[0] or "application/octet-stream"
    sent_at = now_iso()
    with path.open("rb") as body:
        response = s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
    return {"bucket": bucket, "key": key, "version_id": names.object_version(response.get("VersionId")),
            "etag": response.get("ETag"), "content_type": content_type, "sent_at": sent_at}


def _dataset_runs(table: Any, dataset: str, limit: int = 20) -> Iterator[dict[str, Any]]:
    """The dataset's ``limit`` newest runs, by the name as given (not normalized again)."""
    return _query(table, limit, IndexName=DATASET_INDEX, KeyConditionExpression=Key("dataset").eq(dataset))


def run_ids(table: Any, dataset: str, limit: int = 20) -> frozenset[str]:
    """The ids of the dataset's ``limit`` newest runs (``find_run``'s ``before``)."""
    return frozenset(item["run_id"] for item in _dataset_runs(table, dataset, limit))


def find_run(table: Any, dataset: str, dropped: dict[str, Any], timeout: float, poll: Callable[[], None] | None = None,
             before: frozenset[str] = frozenset()) -> dict[str, Any] | None:
    """The run started by one dropped object version, found through by_dataset (no prefix guessing). In a bucket
    without versioning, the run of its key and ETag made after the upload was sent (less ``CLOCK_SLACK``), and not one
    of ``before`` (the runs there were before it, ``run_ids``): the same bytes dropped again are a run of their own."""
    deadline = time.monotonic() + timeout
    etag = (dropped.get("etag") or "").strip('"')
    version = names.object_version(dropped.get("version_id"))
    sent = dropped.get("sent_at")
    after = now_iso(parse_iso(sent) - CLOCK_SLACK) if sent else ""
    while True:
        for item in _dataset_runs(table, dataset):
            source = item.get("source", {})
            same_version = version and source.get("version_id") == version
            same_etag = (not version and not source.get("version_id") and str(item.get("created_at", "")) >= after
                         and item["run_id"] not in before and (source.get("etag") or "").strip('"') == etag)
            if source.get("key") == dropped["key"] and (same_version or same_etag):
                return item
        if time.monotonic() >= deadline:
            return None
        if poll:
            poll()
        time.sleep(1)


def champions(table: Any) -> list[dict[str, Any]]:
    """Every dataset's champion, by dataset name (the sparse by_champion index, never a table scan)."""
    return [champion.as_dict() for champion in list_champions(table)]


def champion_of(runs: RunsRepository, dataset: str, limit: int = 20) -> dict[str, Any] | None:
    """One dataset's champion with its history (every change of champion, newest last) and the champion decisions
    of the dataset's ``limit`` newest runs (newest first); None when the dataset has no champion."""
    dataset = names.normalize_dataset(dataset)
    champion = get_champion(runs.table, dataset)
    if champion is None:
        return None
    decisions = [
        {
            "run_id": item["run_id"],
            "created_at": item.get("created_at"),
            "status": item.get("status"),
            "test_accuracy": (item.get("results") or {}).get("test_accuracy"),
            **{k: v for k, v in item["champion"].items() if k != "test_split"},
            "promoted": isinstance(item.get("promoted"), dict),
        }
        for item in runs.by_dataset(dataset, limit=limit)
        if isinstance(item.get("champion"), dict)
    ]
    return {**champion.as_dict(), "decisions": decisions}


def caller(sts: Any) -> str:
    """Who is running the command, for the record: the caller's ARN, else the local user name."""
    try:
        return sts.get_caller_identity()["Arn"]
    except (BotoCoreError, ClientError):
        return f"user {getpass.getuser()}"
