"""``reviewtune runs logs RUN_ID``: the output of a run's jobs (each trial, the evaluation) from CloudWatch Logs,
where SageMaker writes it, and where the local runtime's SageMaker writes it too: one way to read both. With
``--functions``, also each function's lines that name the run (Powertools adds the run id to them), from
``/aws/lambda/<function>``, where the local runtime's router writes them too.

A job's stream is ``<job name>/algo-1-<epoch>`` in ``/aws/sagemaker/TrainingJobs`` (trials: ``<run>-NNN-xxxxxxxx``)
or ``/aws/sagemaker/ProcessingJobs`` (the evaluation: ``<run>-eval``); one DescribeLogStreams per group, by the run's
id as the prefix, finds them all.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from reviewtune.core import names

TRIAL_SUFFIX = re.compile(r"\d{3}-[a-z0-9]{8}")  # SageMaker names a tuning job's trials <tuning job>-001-1a2b3c4d
MAX_STREAMS = 200  # per group: a run's trials (a tuning job has at most 500; the local budget 2)
PAGE_EVENTS = 1_000  # GetLogEvents page (at most 10,000 events or 1 MB)
MAX_TAIL = 9_999  # GetLogEvents' limit (10,000) less the one event that tells whether there were more


@dataclass
class JobLog:
    """One job's lines: the last ``tail`` of them (all when tail is 0), oldest first, with their times (ms)."""

    job: str
    kind: str  # "trial", "evaluation" or "function"
    group: str
    stream: str
    events: list[dict[str, Any]] = field(default_factory=list)
    truncated: bool = False  # lines before these were left out (``tail``)

    def as_dict(self) -> dict[str, Any]:
        return {"job": self.job, "kind": self.kind, "group": self.group, "stream": self.stream,
                "truncated": self.truncated,
                "events": [{"timestamp": e["timestamp"], "message": e["message"]} for e in self.events]}


def job_kind(run_id: str, job: str) -> str | None:
    """``trial`` or ``evaluation`` for a job of ``run_id``; None for a job of another run whose id starts alike."""
    if job == run_id + names.EVALUATION_SUFFIX:
        return "evaluation"
    return "trial" if job.startswith(run_id + "-") and TRIAL_SUFFIX.fullmatch(job[len(run_id) + 1:]) else None


def streams_of(logs: Any, run_id: str) -> list[tuple[str, str, str, str]]:
    """(group, stream, job, kind) of each job of the run that has a stream, trials in order, then the evaluation."""
    found = []
    for group in (names.TRAINING_LOG_GROUP, names.PROCESSING_LOG_GROUP):
        request: dict[str, Any] = {"logGroupName": group, "logStreamNamePrefix": run_id}
        streams: list[dict[str, Any]] = []
        while len(streams) < MAX_STREAMS:
            try:
                page = logs.describe_log_streams(**request)
            except logs.exceptions.ResourceNotFoundException:  # no job of this kind ever wrote a line here
                break
            streams += page.get("logStreams", [])
            if not page.get("nextToken"):
                break
            request["nextToken"] = page["nextToken"]
        for stream in streams:
            job = stream["logStreamName"].split("/", 1)[0]
            kind = job_kind(run_id, job)
            if kind is not None:
                found.append((group, stream["logStreamName"], job, kind))
    return sorted(found, key=lambda s: (s[3] == "evaluation", s[2], s[1]))


def read(logs: Any, group: str, stream: str, tail: int) -> tuple[list[dict[str, Any]], bool]:
    """The stream's last ``tail`` events (every event when 0), oldest first, and whether earlier ones were left out."""
    request: dict[str, Any] = {"logGroupName": group, "logStreamName": stream}
    if 0 < tail <= MAX_TAIL:
        page = logs.get_log_events(**request, startFromHead=False, limit=tail + 1)
        events = page["events"]
        return events[-tail:], len(events) > tail
    events: list[dict[str, Any]] = []
    token = None
    while True:
        page = logs.get_log_events(**request, startFromHead=True, limit=PAGE_EVENTS,
                                   **({"nextToken": token} if token else {}))
        events += page["events"]
        if not page["events"] or page.get("nextForwardToken") in (None, token):
            return (events[-tail:], len(events) > tail) if tail else (events, False)
        token = page["nextForwardToken"]


def run_logs(logs: Any, run_id: str, tail: int, job: str | None = None) -> list[JobLog]:
    """Each job of the run (or the one ``job`` names: ``evaluation``, a trial's number or suffix, a whole name)."""
    result = []
    for group, stream, name, kind in streams_of(logs, run_id):
        if job is not None and not _named(job, run_id, name, kind):
            continue
        events, truncated = read(logs, group, stream, tail)
        result.append(JobLog(name, kind, group, stream, events, truncated))
    return result


def _named(job: str, run_id: str, name: str, kind: str) -> bool:
    if job in (name, kind):
        return True
    suffix = name.removeprefix(run_id + "-")  # 001-6221c9f6
    return kind == "trial" and (suffix.startswith(job) or suffix.split("-", 1)[0].lstrip("0") == job.lstrip("0"))


FUNCTION_LINES_READ = 10_000  # per function: lines read at most (the newest ``tail`` of them shown)
FUNCTION_PAGES_READ = 100  # per function: FilterLogEvents calls at most
FUNCTION_WINDOW_BEFORE_MS = 60_000  # a run's lines start with its claim: a minute before its record's creation


def function_logs(logs: Any, run_id: str, functions: dict[str, str], since_ms: int, tail: int) -> list[JobLog]:
    """For each function (its name by label), its lines that name ``run_id``, written from ``since_ms`` on, oldest
    first, the last ``tail`` of them (all when 0): FilterLogEvents with the run id as a quoted term."""
    result = []
    for label, name in functions.items():
        group = names.lambda_log_group(name)
        request: dict[str, Any] = {"logGroupName": group, "filterPattern": f'"{run_id}"',
                                   "startTime": max(0, since_ms - FUNCTION_WINDOW_BEFORE_MS)}
        events: list[dict[str, Any]] = []
        for _ in range(FUNCTION_PAGES_READ):  # a page may come back empty while CloudWatch searches on
            try:
                page = logs.filter_log_events(**request)
            except logs.exceptions.ResourceNotFoundException:  # the function never wrote a line
                break
            events += page.get("events", [])
            if not page.get("nextToken") or len(events) >= FUNCTION_LINES_READ:
                break
            request["nextToken"] = page["nextToken"]
        if events:
            events.sort(key=lambda e: e["timestamp"])
            shown = events[-tail:] if tail else events
            result.append(JobLog(label, "function", group, "", shown, len(shown) < len(events)))
    return result


# What Powertools' Logger puts on every line: left out of the short form of a function's line.
POWERTOOLS_KEYS = frozenset({"level", "location", "message", "timestamp", "service", "cold_start", "function_name",
                             "function_memory_size", "function_arn", "function_request_id", "xray_trace_id",
                             "sampling_rate"})
SHORT_LINE_CHARS = 400


def short_line(message: str, run_id: str | None = None) -> str:
    """A function's Powertools JSON line as a person reads it: ``INFO tuning job started  rows={...}`` (its own keys,
    ``run_id`` left out where it is the run's); the event a handler logs on entry as ``event: <detail-type>
    (<source>)``. Any other line as it is."""
    try:
        record = json.loads(message)
    except ValueError:
        return message
    if not isinstance(record, dict) or "level" not in record or "message" not in record:
        return message
    said = record["message"]
    if isinstance(said, dict):
        said = f"event: {said.get('detail-type', 'an event')} ({said.get('source', 'unknown source')})"
    extra = "  ".join(f"{key}={json.dumps(value, separators=(',', ':'), default=str)}"
                      for key, value in record.items()
                      if key not in POWERTOOLS_KEYS and not (key == "run_id" and value == run_id))
    text = f"{record['level']} {said}" + (f"  {extra}" if extra else "")
    return text if len(text) <= SHORT_LINE_CHARS else text[:SHORT_LINE_CHARS - 3] + "..."
