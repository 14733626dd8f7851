"""Sending the run's messages: the outbox half of the transactional-outbox pattern.

A transition into a told state records the message on the run item in the same conditional write
(``runs.RunsRepository.transition``). Sending is its own step, called by the handlers right after the transition,
again by any later event or retry for the run (whatever its status), and by the reconciler for every run in the
``by_pending_notice`` index: it takes a short lease on the message, publishes it, and records the SNS message id
and time (only if still unsent). So a message is never skipped because the run is already final, and two senders
do not publish it twice: the lease outlasts any function that sends, so it runs out only on a dead sender. The one
window left is a sender that dies after SNS accepted the message and before the "sent" write: once its lease
expires, the message is sent again (at-least-once in that window only). Messages go
out in the order they were recorded: a sender that finds one leased by another sends none after it. The topic is
a standard topic, where SNS has no deduplication id; a FIFO topic would close the window but cannot deliver to
e-mail subscriptions.

A run also stays in that index, after its messages went out, while it owes the withdrawal of a package approval
(withdrawal.py) or the stop of a job made after it ended (job_stops.py): the reconciler's pass over the index settles
them.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from reviewtune.core import aws_errors, job_stops, withdrawal
from reviewtune.core.notify import publish
from reviewtune.core.runs import (
    RunsRepository,
    dropped_unsent,
    messages,
    now_iso,
    out_of_date,
    parse_iso,
    unsent,
)

logger = Logger(child=True)

# Longer than any function that sends lives (Timeout 300 s at most; tests/template checks it), so a lease that ran out
# is one whose sender is dead: a live sender whose "sent" write stalls (DynamoDB's timeouts and retries) past a
# shorter lease would see the message published a second time by the next sender. A sender that dies holding it delays
# the message by this long (the reconciler's next pass after it sends it), well within LATE_SECONDS.
LEASE_SECONDS = 360
# SNS has the message: recording that is tried this often (0.2, 0.4, 0.8 s apart) before the sender gives up and
# the message is sent again once its lease is over.
MARK_TRIES = 4
MARK_FIRST_WAIT_SECONDS = 0.2
# A message still unsent this long after it was recorded (three reconciler passes at the default schedule) is late:
# SNS has kept refusing it (the function's permission, the topic or its key), which the LateMessages metric tells.
LATE_SECONDS = 900


def send_pending(
    runs: RunsRepository, sns: Any, topic_arn: str, run_id: str, now: datetime | None = None,
    sent: list[str] | None = None,
) -> list[str]:
    """Send every unsent message of the run, oldest first. Returns the SNS message ids this call sent, which are also
    appended to ``sent`` as they go out (so a caller counts them when a later message is refused). ``now``: the
    caller's clock (a reconciler pass passes its own); leases are taken and judged by it or the wall clock, whichever
    is later.

    Raises when SNS refuses (the message stays unsent for the next try, and the run's later messages with it)."""
    sent = [] if sent is None else sent
    item = runs.get(run_id)
    while item is not None:
        progressed = False
        for entry in unsent(item):
            status = entry["status"]
            if _dropped_in_flight(item, entry, now):
                break  # a sender may still be publishing an earlier message, dropped meanwhile: it sends this one too
            if out_of_date(item, entry):
                # its run started, and the start died before dropping it: dropped here (unless a sender is publishing
                # it), then the item read again, so that later messages wait for such a sender
                runs.supersede_notice(run_id, status)
                progressed = True
                break
            if not runs.lease_notice(run_id, status, LEASE_SECONDS, now):
                if _unsent(runs, run_id, status):
                    # another sender holds it (or held it and died): the later messages wait, so that people are told
                    # in order; that sender, or the one after its lease, sends them
                    break
                continue  # sent meanwhile
            try:
                message_id = publish(sns, topic_arn, entry["subject"], entry["body"], run_id=run_id, status=status)
            except Exception:
                runs.release_notice(run_id, status)
                raise
            if _mark_sent(runs, run_id, status, message_id) is not None:
                sent.append(message_id)
                progressed = True
                logger.info("message sent", extra={"run_id": run_id, "status": status, "message_id": message_id})
        item = runs.get(run_id)
        if not progressed or item is None or not unsent(item):
            break  # else a message was added meanwhile (another sender left it to this one): send it too
    if item and item.get("notice_pending") and not unsent(item) and not withdrawal.owed(item) and not job_stops.pending(item):
        # a debt (a stop, a withdrawal) owed after the run ended can be written after this read: the clear must not
        # drop it
        runs.clear_pending_notice(run_id, item["status"], unless_set=job_stops.ATTRIBUTES,
                                  updated_at=item.get("updated_at"))
    return sent


def _dropped_in_flight(item: dict[str, Any], entry: dict[str, Any], now: datetime | None) -> bool:
    """Whether a message recorded before ``entry`` was dropped unsent (``runs.supersede_notice``) while a sender held
    its lease: that sender may be publishing it now, and messages after it wait for it as behind any leased one (its
    lease ends when the sender marks it sent, gives it back, or dies)."""
    moment = now_iso(max(now or datetime.now(UTC), datetime.now(UTC)))
    return any(
        dropped_unsent(earlier) and earlier.get("lease_until", "") > moment
        and earlier.get("created_at", "") < entry.get("created_at", "")
        for earlier in messages(item)
    )


def _unsent(runs: RunsRepository, run_id: str, status: str) -> bool:
    item = runs.get(run_id)
    return item is not None and any(entry["status"] == status for entry in unsent(item))


def _mark_sent(runs: RunsRepository, run_id: str, status: str, message_id: str) -> dict[str, Any] | None:
    """``mark_sent``, tried again when DynamoDB refuses for a moment: the message is out, and failing to record it
    would send it twice."""
    for attempt in range(MARK_TRIES):
        try:
            return runs.mark_sent(run_id, status, message_id)
        except ClientError as exc:
            if not aws_errors.transient(exc) or attempt + 1 == MARK_TRIES:
                raise
            logger.warning("recording a sent message was refused; trying again",
                           extra={"run_id": run_id, "status": status, "error": aws_errors.text(exc)})
            time.sleep(MARK_FIRST_WAIT_SECONDS * 2**attempt)
    return None


def late(item: dict[str, Any], now: datetime) -> int:
    """How many of the run's messages are still unsent ``LATE_SECONDS`` after they were recorded."""
    return sum(1 for entry in unsent(item)
               if entry.get("created_at") and (now - parse_iso(entry["created_at"])).total_seconds() >= LATE_SECONDS)
