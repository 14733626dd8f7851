"""S3 "Object Created" events that failed every retry, taken back from StartTuning's dead-letter queue.

An event whose handling failed before its run was claimed (HeadObject, the idempotency store or the claim itself kept
failing through Lambda's and EventBridge's retries) exists nowhere but in that queue: the runs table has no trace
of its object, so the rest of the reconciler cannot see it. Each reconciler pass therefore receives those messages
and, for each, makes sure the object's run exists:

- the object is looked up as the event handler does (``locate_dropped_object``: the key as stored, its size); if S3
  still fails, a run of one of the keys it may stand for is the one; else, when the key is one of two (as given and
  URL-decoded), the message waits (for S3, or for the listing of incoming/ to claim the stored key's run, which the
  next pass finds) until twice the sweep's grace after the event; else (or after that) the first key a lookup tries
  is used (``unlocated_object``: the key as the event gives it, unless it is longer than S3 allows);
- the run is claimed (a conditional write: a run that exists is left as it is), then the message is deleted. From
  then on the run is the reconciler's like any other: the stale-claim restart starts it (after
  ``STALE_CLAIM_SECONDS``, its deadline checked first), and a claim that never gets going ends ``FAILED`` at its
  deadline with its message. So every dead-lettered start event still ends in one outcome and one message. Nothing
  is started here: a file that made StartTuning run out of time or memory would end the reconcile function's
  invocation, so its restart comes last in the pass (``reconciler.restart_claim``);
- when even the claim cannot be written, the message stays (hidden until the next pass) for a later pass; a body
  that is not an "Object Created" event is left in the queue, for people (the queue's alarm, ``reviewtune
  dead-letters``).

The queue's approximate count is read first, so an empty queue costs one call; then messages are received with a
short long-poll (``WAIT_SECONDS``), which asks every SQS server rather than a sample.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger

from reviewtune.core import names
from reviewtune.core.clients import AwsClients
from reviewtune.core.config import Settings
from reviewtune.core.errors import InvalidEventError
from reviewtune.core.events import object_created
from reviewtune.core.failures import repository
from reviewtune.core.objects import known_object, locate_dropped_object, unlocated_object, with_event
from reviewtune.core.runs import parse_iso
from reviewtune.core.tuning import claim_run, earlier_prefix_run, other_bucket, run_exists

logger = Logger(child=True)

MAX_MESSAGES_PER_PASS = 100  # claiming is two small writes; a backlog drains over a few passes
RECEIVE_BATCH = 10  # SQS's maximum per ReceiveMessage
WAIT_SECONDS = 1
# A message left in the queue is hidden until shortly before the next pass (ReconcileSchedule: every 5 minutes).
VISIBILITY_TIMEOUT_SECONDS = 240


@dataclass
class TakenBack:
    """What one pass did with the dead-lettered start events."""

    received: int = 0
    claimed: int = 0  # runs written now
    existing: int = 0  # the object's run was there already (the failure came after its claim)
    ignored: int = 0  # outside incoming/, or a folder marker: no run, as for the event handler
    left: int = 0  # left in the queue (not an event, or the claim failed)

    def summary(self) -> dict[str, Any]:
        return asdict(self)


def take_back_start_events(settings: Settings, clients: AwsClients, now: datetime | None = None) -> TakenBack:
    """One pass over StartTuning's dead-letter queue (nothing when ``START_TUNING_DEAD_LETTER_QUEUE_URL`` is unset)."""
    now = now or datetime.now(UTC)
    result = TakenBack()
    url = settings.start_dead_letter_queue_url
    if not url or not waiting(clients.sqs, url):
        return result
    seen: set[str] = set()  # a message left may come back within the pass (a pass longer than the hiding)
    while result.received < MAX_MESSAGES_PER_PASS:
        batch = clients.sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=min(RECEIVE_BATCH, MAX_MESSAGES_PER_PASS - result.received),
            VisibilityTimeout=VISIBILITY_TIMEOUT_SECONDS,
            WaitTimeSeconds=WAIT_SECONDS,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        batch = [m for m in batch if m["MessageId"] not in seen]
        if not batch:
            break
        for message in batch:
            seen.add(message["MessageId"])
            result.received += 1
            if _take_back(message, settings, clients, result, now):
                clients.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            else:
                result.left += 1
    if result.received:
        logger.info("dead-lettered start events taken back", extra=result.summary())
    return result


def _past_the_sweep(event: dict[str, Any], settings: Settings, now: datetime) -> bool:
    """Whether the reconciler's listing of incoming/ had time to claim the event's object (twice its grace since the
    event; an event without a readable time counts as past it): past that, a run named by a guessed key is better
    than none."""
    try:
        happened = parse_iso(str(event["time"]))
    except (KeyError, TypeError, ValueError):
        return True
    return (now - happened).total_seconds() >= 2 * settings.missed_drop_grace_minutes * 60


def waiting(sqs: Any, url: str) -> int:
    """Messages in the queue, visible or not (approximate: one that is missed now is seen by a later pass)."""
    counts = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return sum(int(value) for value in counts.values())


def _take_back(message: dict[str, Any], settings: Settings, clients: AwsClients, result: TakenBack,
               now: datetime) -> bool:
    """Make sure the run of the message's object exists; True: the message may be deleted."""
    try:
        event = json.loads(message.get("Body") or "")
        detail = object_created(event)
    except (ValueError, InvalidEventError) as exc:
        logger.warning("a dead letter that is not an Object Created event is left in the queue", extra={
            "message_id": message.get("MessageId"), "error": str(exc)})
        return False
    bucket, obj = detail.bucket, detail.object
    if not names.is_accepted_key(obj.key, obj.size) or other_bucket(bucket, obj.key, settings):  # as start_tuning
        result.ignored += 1
        return True
    has_run = run_exists(settings, clients)
    try:
        dropped = locate_dropped_object(clients.s3, bucket, obj.key, obj.version_id, obj.etag, obj.size, has_run)
    except Exception as exc:  # noqa: BLE001 - S3 still failing: the key whose run exists, else the only key it can be
        logger.warning("the dead-lettered object cannot be looked up", extra={"key": obj.key, "error": str(exc)})
        if (known_object(bucket, obj.key, obj.version_id, obj.etag, obj.size, has_run) is None
                and len(names.key_candidates(obj.key)) > 1 and not _past_the_sweep(event, settings, now)):
            # the key as given or its URL-decoded form: a guess could name the run after a key that does not exist
            # (its start rejecting the file as deleted, then the sweep claiming the stored key's run: two outcomes);
            # the message waits for S3, or for the sweep's claim, which the next pass finds
            return False
        dropped = unlocated_object(bucket, obj.key, obj.version_id, obj.etag, obj.size, has_run)
    dropped = with_event(dropped, obj)  # another upload of the same bytes: a run of its own
    runs = repository(settings, clients)
    try:
        if earlier_prefix_run(runs, dropped, settings.job_name_prefix) is not None:
            result.existing += 1  # its run was made before JobNamePrefix changed
            return True
        claimed, run = claim_run(dropped, runs, settings)
    except Exception:  # noqa: BLE001 - the message stays for a later pass
        logger.exception("claiming the run of a dead-lettered event failed", extra={"key": obj.key})
        return False
    if claimed:
        result.claimed += 1
        logger.info("run claimed for a dead-lettered start event", extra={"run_id": run["run_id"], "key": obj.key})
    else:
        result.existing += 1
    return True
