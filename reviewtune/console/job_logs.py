"""``reviewtune runs logs RUN_ID``: the output of a run's jobs (each trial, the evaluation) from CloudWatch Logs,
where SageMaker writes it, and where the local runtime's SageMaker writes it too: one way to read both. With
``--functions``, also each function invocation that names the run (Powertools adds the run id to its lines; the
invocation's other lines, found by its request id, come with them), from ``/aws/lambda/<function>``, where the local
runtime's router writes them too.

A job's stream is ``<job name>/algo-1-<epoch>`` in ``/aws/sagemaker/TrainingJobs`` (trials: ``<run>-NNN-xxxxxxxx``)
or ``/aws/sagemaker/ProcessingJobs`` (the evaluation: ``<run>-eval``); one DescribeLogStreams per group, by the run's
id as the prefix, finds them all.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from reviewtune.core import names

TRIAL_SUFFIX = re.compile(r"\d{3}-[a-z0-9]{8}")  # SageMaker names a tuning job's trials <tuning job>-001-1a2b3c4d
# per group: a stream for each of a run's trials (a tuning job has at most 500), and more for a trial SageMaker
# started again (a spot instance taken back): 40 DescribeLogStreams pages of 50 at most
MAX_STREAMS = 2_000
STREAMS_PAGE = 50  # DescribeLogStreams' most
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
        request: dict[str, Any] = {"logGroupName": group, "logStreamNamePrefix": run_id, "limit": STREAMS_PAGE}
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


def run_logs(logs: Any, run_id: str, tail: int, jobs: Sequence[str] = ()) -> list[JobLog]:
    """Each job of the run (or those ``jobs`` name: ``evaluation``, a trial's number or suffix, a whole name)."""
    result = []
    for group, stream, name, kind in streams_of(logs, run_id):
        if jobs and not any(_named(job, run_id, name, kind) for job in jobs):
            continue
        events, truncated = read(logs, group, stream, tail)
        result.append(JobLog(name, kind, group, stream, events, truncated))
    return result


def _named(job: str, run_id: str, name: str, kind: str) -> bool:
    """Whether ``--job`` names this job: its whole name, its kind ('evaluation'), a trial's number (2, 02, 002:
    that trial alone, never 20 or 200) or the start of its suffix with the number whole (002-62, 002-6221c9f6)."""
    if job in (name, kind):
        return True
    if kind != "trial":
        return False
    suffix = name.removeprefix(run_id + "-")  # 001-6221c9f6
    number = suffix.split("-", 1)[0]
    if job.isascii() and job.isdigit():  # ASCII: '²' is a digit to isdigit, not to int
        return number.isascii() and number.isdigit() and int(number) == int(job)
    return "-" in job and suffix.startswith(job)


def names_function(job: str, label: str, name: str) -> bool:
    """Whether ``--job`` names this function: its logical id (``RecordResultsFunction``), that without ``Function``,
    in snake or kebab case (``record_results``, ``record-results``), any case; or its deployed name."""
    def plain(text: str) -> str:
        return text.lower().replace("_", "").replace("-", "").removesuffix("function")
    return (bool(name) and job == name) or (bool(plain(job)) and plain(job) == plain(label))


FUNCTION_LINES_READ = 10_000  # per function: lines read at most (the newest ``tail`` of them shown)
FUNCTION_PAGES_READ = 100  # per FilterLogEvents search: calls at most
FUNCTION_WINDOW_BEFORE_MS = 60_000  # a run's lines start with its claim: a minute before its record's creation
FUNCTION_INVOCATIONS_READ = 50  # per function: the newest invocations naming the run, read whole
LAMBDA_MAX_DURATION_MS = 15 * 60_000  # an invocation's lines lie within this of any other of its lines
# Lambda's lines that carry the invocation's request id: START / END / REPORT, and the Python runtime's own log format
# ("[INFO]\t<time>\t<request id>\t..."); Powertools' JSON lines carry it as function_request_id, an unhandled
# error's JSON as requestId.
REQUEST_ID = re.compile(r"^(?:START|END|REPORT) RequestId: ([\w-]+)|^\[[A-Z]+\]\t[^\t]*\t([\w-]{8,})\t")


def _record(message: str) -> dict[str, Any] | None:
    if not message.startswith("{"):
        return None
    try:
        record = json.loads(message)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def request_id(message: str) -> str | None:
    """The Lambda request id a function's line belongs to, when the line says it."""
    record = _record(message)
    if record is not None:
        found = record.get("function_request_id") or record.get("requestId")
        return found if isinstance(found, str) else None
    match = REQUEST_ID.match(message)
    return (match.group(1) or match.group(2)) if match else None


def about_another_run(message: str, run_id: str) -> bool:
    """A Powertools line of another run (its ``run_id``), such as a reconciler pass's line on each run it looked at."""
    record = _record(message)
    return record is not None and record.get("run_id") not in (None, run_id) and run_id not in message


def _search(logs: Any, request: dict[str, Any], room: int) -> list[dict[str, Any]] | None:
    """FilterLogEvents, page after page, up to ``room`` events; None when the group does not exist."""
    request, events = dict(request), []
    for _ in range(FUNCTION_PAGES_READ):  # a page may come back empty while CloudWatch searches on
        try:
            page = logs.filter_log_events(**request)
        except logs.exceptions.ResourceNotFoundException:  # the function never wrote a line
            return None
        events += page.get("events", [])
        if not page.get("nextToken") or len(events) >= room:
            break
        request["nextToken"] = page["nextToken"]
    return events[:room]


def _invocation(logs: Any, group: str, stream: str, rid: str, span: list[int], room: int) -> list[dict[str, Any]]:
    """The lines of one invocation, START to REPORT: Lambda writes a stream's invocations one after another, so the
    lines between an invocation's START and its REPORT are its own, the ones that carry no request id included (a
    print, a traceback). Without both marks, the lines that carry its request id."""
    where = {"logGroupName": group, **({"logStreamNames": [stream]} if stream else {})}
    marked = _search(logs, {**where, "filterPattern": f'"{rid}"', "startTime": max(0, span[0] - LAMBDA_MAX_DURATION_MS),
                            "endTime": span[1] + LAMBDA_MAX_DURATION_MS}, room) or []
    mine = [e for e in marked if request_id(e["message"]) == rid]
    starts = [e["timestamp"] for e in mine if e["message"].startswith("START ")]
    reports = [e["timestamp"] for e in mine if e["message"].startswith("REPORT ")]
    if stream and starts and reports:
        between = _search(logs, {**where, "startTime": min(starts), "endTime": max(reports)}, room) or []
        first = next((i for i, e in enumerate(between) if e["message"].startswith(f"START RequestId: {rid}")), None)
        last = next((i for i in range(len(between) - 1, -1, -1)
                     if between[i]["message"].startswith(f"REPORT RequestId: {rid}")), None)
        if first is not None and last is not None and first <= last:
            return between[first:last + 1]
    return mine


def invocations_naming(logs: Any, group: str, run_id: str, since_ms: int) -> list[dict[str, Any]] | None:
    """The lines of each invocation that names ``run_id`` (the newest ``FUNCTION_INVOCATIONS_READ`` of them), oldest
    first: the event the handler logged on entry, before it knew the run, and Lambda's START / END / REPORT with
    them; an invocation's Powertools lines about another run left out. A line naming the run whose invocation cannot
    be told is kept alone. None: the function has no log group."""
    request = {"logGroupName": group, "startTime": max(0, since_ms - FUNCTION_WINDOW_BEFORE_MS)}
    naming = _search(logs, {**request, "filterPattern": f'"{run_id}"'}, FUNCTION_LINES_READ)
    if naming is None:
        return None
    spans: dict[tuple[str, str], list[int]] = {}  # (stream, request id) -> the first and last line naming the run
    lines = []
    for event in naming:
        rid = request_id(event["message"])
        if rid is None:
            lines.append(event)
            continue
        span = spans.setdefault((event.get("logStreamName", ""), rid), [event["timestamp"], event["timestamp"]])
        span[0], span[1] = min(span[0], event["timestamp"]), max(span[1], event["timestamp"])
    for (stream, rid), span in sorted(spans.items(), key=lambda item: item[1][0])[-FUNCTION_INVOCATIONS_READ:]:
        if len(lines) >= FUNCTION_LINES_READ:
            break
        lines += [e for e in _invocation(logs, group, stream, rid, span, FUNCTION_LINES_READ - len(lines))
                  if not about_another_run(e["message"], run_id)]
    unique = {(e.get("logStreamName", ""), e.get("eventId") or (e["timestamp"], e["message"])): e for e in lines}
    # sorted stably by time: an invocation's lines of one millisecond keep their order
    return sorted(unique.values(), key=lambda e: e["timestamp"])


def function_logs(logs: Any, run_id: str, functions: dict[str, str], since_ms: int, tail: int) -> list[JobLog]:
    """For each function (its name by label), the lines of its invocations that name ``run_id`` (from ``since_ms`` on),
    oldest first, the last ``tail`` of them (all when 0)."""
    result = []
    for label, name in functions.items():
        group = names.lambda_log_group(name)
        events = invocations_naming(logs, group, run_id, since_ms)
        if events:
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
    (<source>)``; Powertools' metrics (CloudWatch embedded metric format) as ``METRICS RunsTuning=1``. Any other line
    as it is."""
    record = _record(message)
    if record is None:
        return message
    metrics = _metric_values(record)
    if metrics is not None:
        return "METRICS " + "  ".join(f"{name}={value}" for name, value in metrics.items())
    if "level" not in record or "message" not in record:
        return message
    said = record["message"]
    if isinstance(said, dict):
        said = f"event: {said.get('detail-type', 'an event')} ({said.get('source', 'unknown source')})"
    extra = "  ".join(f"{key}={json.dumps(value, separators=(',', ':'), default=str)}"
                      for key, value in record.items()
                      if key not in POWERTOOLS_KEYS and not (key == "run_id" and value == run_id))
    text = f"{record['level']} {said}" + (f"  {extra}" if extra else "")
    return text if len(text) <= SHORT_LINE_CHARS else text[:SHORT_LINE_CHARS - 3] + "..."


def _metric_values(record: dict[str, Any]) -> dict[str, str] | None:
    """The metrics an embedded-metric-format line gives (name -> its values, joined by ``,``), or None for any other
    line."""
    aws = record.get("_aws")
    if not isinstance(aws, dict) or not isinstance(aws.get("CloudWatchMetrics"), list):
        return None
    found: dict[str, str] = {}
    for directive in aws["CloudWatchMetrics"]:
        for metric in directive.get("Metrics", []) if isinstance(directive, dict) else []:
            name = metric.get("Name") if isinstance(metric, dict) else None
            if isinstance(name, str) and name in record:
                values = record[name] if isinstance(record[name], list) else [record[name]]
                found[name] = ",".join(_number(v) for v in values)
    return found or None


def _number(value: Any) -> str:
    """``68.33`` (two places at most), ``1`` for 1.0; anything else as it is."""
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return str(value)
