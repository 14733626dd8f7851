"""``reviewtune dead-letters``: what each function's dead-letter queue holds, without taking anything out of it.

Each function has one queue (the stack outputs ``<Function>DeadLetterQueueUrl``) for the events whose handling failed
every retry: Lambda puts an asynchronous invocation's event there with ``ErrorCode`` / ``ErrorMessage`` attributes,
EventBridge an event it could not deliver with ``ERROR_CODE`` / ``ERROR_MESSAGE``. Reading a message hides it: each
one read is hidden for at most ``PEEK_SECONDS`` (so the next receive brings others) and made visible again as soon as
the queue is read, for everyone else (the reconciler takes StartTuning's back every pass). The count comes from the
queue's attributes (approximate); the rows are read with 1 s long polls until two bring nothing new.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from rich.table import Table

from reviewtune.console.text import FOLD, WHOLE, add_row, utc_time
from reviewtune.core.dead_letters import waiting

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
        return f"s3://{bucket}/{obj.get('key', '?')}" + (f" (version {version})" if version else "")
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


def describe(function: str, message: dict[str, Any]) -> DeadLetter:
    return DeadLetter(
        function=function,
        message_id=message["MessageId"],
        sent_at=_sent_at(message),
        receives=int((message.get("Attributes") or {}).get("ApproximateReceiveCount", 0)),
        error=_error(message),
        about=_about(message.get("Body") or ""),
    )


def peek(sqs: Any, url: str, function: str, limit: int) -> QueueState:
    """The queue's count and up to ``limit`` of its messages, left in the queue."""
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
            handles += [m["ReceiptHandle"] for m in batch]
            new = [m for m in batch if m["MessageId"] not in seen]
            empty = 0 if new else empty + 1
            for message in new[: limit - len(seen)]:
                seen[message["MessageId"]] = describe(function, message)
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


def read_all(target: Any, limit: int) -> list[QueueState]:
    """Every dead-letter queue of the stack (those it has outputs for)."""
    sqs = target.client("sqs")
    return [
        peek(sqs, target.outputs[output], function, limit)
        for function, output in QUEUES.items()
        if output in target.outputs
    ]


def as_data(states: list[QueueState]) -> list[dict[str, Any]]:
    return [asdict(state) for state in states]


def table(states: list[QueueState], title: str) -> Table:
    view = Table(title=title)
    for column in ("function", "waiting", "sent (UTC)", "receives", "about", "error"):
        view.add_column(column, justify="right" if column in ("waiting", "receives") else "left",
                        **(FOLD if column in ("about", "error") else WHOLE))
    for state in states:
        if not state.messages:
            add_row(view, state.function, str(state.waiting), "-", "-", "(empty)" if not state.waiting else "-", "-")
        for index, message in enumerate(state.messages):
            add_row(
                view,
                state.function if index == 0 else "",
                str(state.waiting) if index == 0 else "",
                utc_time(message.sent_at),
                str(message.receives),
                message.about,
                message.error,
            )
    return view
