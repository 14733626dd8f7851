"""``reviewtune dead-letters``: what each function's dead-letter queue holds, and whether it still matters.

Each function has one queue (the stack outputs ``<Function>DeadLetterQueueUrl``) for the events whose handling failed
every retry: Lambda puts an asynchronous invocation's event there with ``ErrorCode`` / ``ErrorMessage`` attributes,
EventBridge an event it could not deliver with ``ERROR_CODE`` / ``ERROR_MESSAGE``. Reading a message hides it: each
one read is hidden for at most ``PEEK_SECONDS`` (so the next receive brings others) and made visible again as soon as
the queue is read, for everyone else (the reconciler takes StartTuning's back every pass). The count comes from the
queue's attributes (approximate); the rows are read with 1 s long polls until two bring nothing new.

Each event about a run (a dropped file's, a tuning or an evaluation job's) is put beside that run as it is now: the
reconciler reads job states from SageMaker itself, so an event whose run has ended and told its outcome has nothing
left to do. ``--delete-settled`` deletes exactly those (a queue's alarm then clears); every other message is left
for people: a run still going, an event about no run, a reconciler pass, a body that is not an event.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from rich.table import Table

from reviewtune.console import audit
from reviewtune.console.text import FOLD, WHOLE, add_row, new_table, utc_time
from reviewtune.core import names, page
from reviewtune.core.dead_letters import waiting
from reviewtune.core.errors import InvalidEventError
from reviewtune.core.events import object_created
from reviewtune.core.objects import with_event
from reviewtune.core.runs import RunsRepository
from reviewtune.core.states import is_final
from reviewtune.core.tuning import DroppedObject, upload_run

# The function of each queue, and the stack output naming it.
QUEUES = {
    "StartTuning": "StartTuningDeadLetterQueueUrl",
    "StartEvaluation": "StartEvaluationDeadLetterQueueUrl",
    "RecordResults": "RecordResultsDeadLetterQueueUrl",
    "Reconcile": "ReconcileDeadLetterQueueUrl",
}
RECEIVE_BATCH = 10
MAX_EMPTY_RECEIVES = 2  # receives that bring nothing new before a queue counts as read
WAIT_SECONDS = 1  # a long poll asks every SQS server, not a sample
PEEK_SECONDS = 30  # the longest a message read here stays hidden (if giving it back fails)


@dataclass(frozen=True)
class DeadLetter:
    function: str
    message_id: str
    sent_at: str
    receives: int
    error: str
    about: str  # what the event was about: the dropped object, the job and its status, a reconciler pass
    run_id: str | None = None  # the run the event is about, when one is found
    run_now: str = "-"  # that run as it is now ("SUCCEEDED, told", "TUNING"), or why none is named
    settled: bool = False  # the run has ended and its outcome message is sent: the event has nothing left to do
    deleted: bool = False  # deleted by --delete-settled


@dataclass(frozen=True)
class QueueState:
    function: str
    url: str
    waiting: int  # ApproximateNumberOfMessages (+ those in flight)
    messages: list[DeadLetter]


def _attribute(message: dict[str, Any], *names: str) -> str | None:
    attributes = message.get("MessageAttributes") or {}
    for name in names:
        value = (attributes.get(name) or {}).get("StringValue")
        if value:
            return value
    return None


def _error(message: dict[str, Any]) -> str:
    """The failure as Lambda (``ErrorMessage``) or EventBridge (``ERROR_CODE: ERROR_MESSAGE``) recorded it."""
    lambda_error = _attribute(message, "ErrorMessage")
    if lambda_error:
        return lambda_error
    code, text = _attribute(message, "ERROR_CODE"), _attribute(message, "ERROR_MESSAGE")
    return ": ".join(part for part in (code, text) if part) or "-"


def _about(body: str) -> str:
    """What the dead-lettered event was about, in a few words."""
    try:
        event = json.loads(body)
    except ValueError:
        return f"not JSON: {body[:80]!r}"
    if not isinstance(event, dict):
        return f"not an event: {body[:80]!r}"
    detail = event.get("detail") if isinstance(event.get("detail"), dict) else {}
    kind = event.get("detail-type")
    if kind == "Object Created":
        bucket = (detail.get("bucket") or {}).get("name", "?")
        obj = detail.get("object") or {}
        version = obj.get("version-id")
        return page.versioned(f"s3://{bucket}/{obj.get('key', '?')}", version)
    for job in ("HyperParameterTuningJob", "ProcessingJob"):
        if f"{job}Name" in detail:
            return f"{detail[f'{job}Name']} {detail.get(f'{job}Status', '?')}"
    if event.get("source") == "aws.scheduler" or not event:
        return "a reconciler pass"
    return f"{event.get('source', '?')} {kind or '?'}"


def _sent_at(message: dict[str, Any]) -> str:
    stamp = (message.get("Attributes") or {}).get("SentTimestamp")
    if not stamp:
        return "-"
    return datetime.fromtimestamp(int(stamp) / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def describe(function: str, message: dict[str, Any], runs: RunsRepository | None = None) -> DeadLetter:
    body = message.get("Body") or ""
    return DeadLetter(
        function=function,
        message_id=message["MessageId"],
        sent_at=_sent_at(message),
        receives=int((message.get("Attributes") or {}).get("ApproximateReceiveCount", 0)),
        error=_error(message),
        about=_about(body),
        **(_run_state(body, runs) if runs is not None else {}),
    )


def _runs_of(body: str, runs: RunsRepository) -> list[dict[str, Any]] | None:
    """The run the event is about (a list of at most one): its job's run, or the dropped object's (any form of the
    key, as start_tuning looks it up); None for an event about no run (a reconciler pass, a body not an event)."""
    try:
        event = json.loads(body)
    except ValueError:
        return None
    if not isinstance(event, dict):  # JSON, but no event: an array, a number, a string
        return None
    detail = event.get("detail") if isinstance(event.get("detail"), dict) else {}
    job = detail.get("HyperParameterTuningJobName") or detail.get("ProcessingJobName")
    if isinstance(job, str):
        try:
            run_id = job if "ProcessingJobName" not in detail else names.run_id_of_evaluation_job(job)
        except ValueError:  # a processing job that is no run's evaluation
            return []
        run = runs.get(run_id)
        return [run] if run else []
    try:
        created = object_created(event)
    except InvalidEventError:
        return None
    obj = created.object
    for key in names.key_forms(obj.key):
        # as start_tuning claims it: the version (its ETag in a bucket without versioning), that upload's
        dropped = with_event(DroppedObject(created.bucket, key, obj.version_id, obj.etag, obj.size), obj)
        run = upload_run(dropped, runs.all_of_dataset(names.dataset_name(key)))
        if run is not None:
            return [run]
    return []


def _run_state(body: str, runs: RunsRepository) -> dict[str, Any]:
    found = _runs_of(body, runs)
    if not found:
        return {"run_now": "-" if found is None else "no run found"}
    [run] = found
    status = str(run.get("status"))
    if not is_final(status):
        return {"run_id": run["run_id"], "run_now": status}
    told = audit.was_told(run)
    return {"run_id": run["run_id"], "run_now": f"{status}, {'told' if told else 'not told yet'}", "settled": told}


def peek(sqs: Any, url: str, function: str, limit: int, runs: RunsRepository | None = None,
         delete_settled: bool = False) -> QueueState:
    """The queue's count and up to ``limit`` of its messages, each beside its run as it is now (with ``runs``), left
    in the queue; with ``delete_settled``, those whose run has ended and told its outcome are deleted."""
    count = waiting(sqs, url)
    seen: dict[str, DeadLetter] = {}
    handles: list[str] = []
    empty = 0
    try:
        while count and len(seen) < limit and empty < MAX_EMPTY_RECEIVES:
            batch = sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=min(RECEIVE_BATCH, limit - len(seen)),
                VisibilityTimeout=PEEK_SECONDS,
                WaitTimeSeconds=WAIT_SECONDS,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            new = [m for m in batch if m["MessageId"] not in seen]
            empty = 0 if new else empty + 1
            kept = new[: limit - len(seen)]
            handles += [m["ReceiptHandle"] for m in batch if m not in kept]
            for message in kept:
                letter = describe(function, message, runs)
                if delete_settled and letter.settled:
                    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                    letter = replace(letter, deleted=True)
                else:
                    handles.append(message["ReceiptHandle"])
                seen[message["MessageId"]] = letter
    finally:
        _give_back(sqs, url, handles)
    messages = sorted(seen.values(), key=lambda m: m.sent_at)
    return QueueState(function, url, count, messages)


def _give_back(sqs: Any, url: str, handles: list[str]) -> None:
    """Make the messages read visible again at once."""
    for start in range(0, len(handles), RECEIVE_BATCH):
        sqs.change_message_visibility_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": 0}
                for i, handle in enumerate(handles[start : start + RECEIVE_BATCH])
            ],
        )


def read_all(target: Any, limit: int, delete_settled: bool = False) -> list[QueueState]:
    """Every dead-letter queue of the stack (those it has outputs for), each message beside its run."""
    sqs = target.client("sqs")
    runs = target.runs() if "RunsTableName" in target.outputs else None
    return [
        peek(sqs, target.outputs[output], function, limit, runs, delete_settled)
        for function, output in QUEUES.items()
        if output in target.outputs
    ]


def as_data(states: list[QueueState]) -> list[dict[str, Any]]:
    return [asdict(state) for state in states]


def table(states: list[QueueState], title: str) -> Table:
    view = new_table(title)
    for column in ("function", "waiting", "sent (UTC)", "receives", "about", "error", "run now"):
        view.add_column(column, justify="right" if column in ("waiting", "receives") else "left",
                        **(FOLD if column in ("about", "error", "run now") else WHOLE))
    for state in states:
        if not state.messages:
            add_row(view, state.function, str(state.waiting), "-", "-", "(empty)" if not state.waiting else "-", "-",
                    "-")
        for index, message in enumerate(state.messages):
            add_row(
                view,
                state.function if index == 0 else "",
                str(state.waiting) if index == 0 else "",
                utc_time(message.sent_at),
                str(message.receives),
                message.about,
                message.error,
                _run_cell(message),
            )
    return view


def _run_cell(message: DeadLetter) -> str:
    text = f"{message.run_id}: {message.run_now}" if message.run_id else message.run_now
    if message.deleted:
        return f"{text} (deleted: settled)"
    return f"{text} (settled)" if message.settled else text


def deleted(states: list[QueueState]) -> int:
    return sum(1 for state in states for message in state.messages if message.deleted)


def left(states: list[QueueState]) -> int:
    """How many messages the queues still hold (their count as read, visible and in flight, less those deleted
    here)."""
    return sum(max(state.waiting - sum(1 for m in state.messages if m.deleted), 0) for state in states)
