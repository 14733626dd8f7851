"""The runs table: one item per run, keyed by run_id (= tuning job name). Item conversion lives here only.

Every change of a run's status is a transition of the state machine in ``states.py``, written as one conditional
update on the current status (compare-and-set). When the target state is one people are told about, the same
update records the message in the run's outbox (``outbox.<STATUS>``) and marks the run in the sparse
``by_pending_notice`` index; ``outbox.py`` sends it and records the SNS message id.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from reviewtune.core import page, states
from reviewtune.core.states import FINAL_STATUSES, RunStatus

__all__ = ["FINAL_STATUSES", "RunStatus", "RunsRepository", "from_item", "now_iso", "to_item"]

DATASET_INDEX = "by_dataset"
STATUS_INDEX = "by_status"
PENDING_NOTICE_INDEX = "by_pending_notice"
PENDING = "PENDING"  # value of notice_pending while a message of the run is unsent


def no_such_run(run_id: str) -> str:
    """What a command that acts on a run (stop, retry, promote) says of an id that names none: it takes whole ids
    only, never the start of one, so that it cannot act on a run the person did not mean."""
    return (f"no run {run_id!r} (stop, retry and promote take a run's whole id, as `reviewtune runs list` or "
            f"`reviewtune runs show {page.shell_word(run_id)}` shows it)")


def now_iso(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return now.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def to_item(value: Any) -> Any:
    """Plain JSON-able data to what DynamoDB accepts (floats as Decimal, datetimes as ISO strings).

    NaN and Infinity, which DynamoDB refuses, are stored as null."""
    return json.loads(json.dumps(value, default=_default), parse_float=Decimal, parse_constant=lambda _: None)


def from_item(value: Any) -> Any:
    """A DynamoDB item back to plain JSON-able data (Decimal to int or float)."""
    if isinstance(value, dict):
        return {k: from_item(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_item(v) for v in value]
    if isinstance(value, set):
        return sorted(from_item(v) for v in value)
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"cannot store {type(value).__name__} in a run item")


def _conditional_failed(exc: ClientError) -> bool:
    return exc.response["Error"]["Code"] == "ConditionalCheckFailedException"


class _Update:
    """Builds one UpdateExpression with placeholders for every name and value."""

    def __init__(self) -> None:
        self.sets: list[str] = []
        self.removes: list[str] = []
        self.names: dict[str, str] = {}
        self.values: dict[str, Any] = {}

    def name(self, *path: str) -> str:
        parts = []
        for part in path:
            placeholder = f"#n{len(self.names)}"
            self.names[placeholder] = part
            parts.append(placeholder)
        return ".".join(parts)

    def value(self, value: Any, *, raw: bool = False) -> str:
        placeholder = f":v{len(self.values)}"
        self.values[placeholder] = value if raw else to_item(value)
        return placeholder

    def set(self, *path: str, value: Any) -> None:
        self.sets.append(f"{self.name(*path)} = {self.value(value)}")

    def remove(self, *path: str) -> None:
        self.removes.append(self.name(*path))

    def expression(self) -> str:
        parts = []
        if self.sets:
            parts.append("SET " + ", ".join(self.sets))
        if self.removes:
            parts.append("REMOVE " + ", ".join(self.removes))
        return " ".join(parts)


class RunsRepository:
    """Reads and writes run items. Takes a boto3 DynamoDB Table resource."""

    def __init__(self, table: Any, deadlines: Mapping[RunStatus, int] | None = None):
        self.table = table
        self.deadlines = dict(states.DEFAULT_DEADLINES if deadlines is None else deadlines)

    def deadline_at(self, status: RunStatus, now: datetime | None = None) -> str | None:
        seconds = self.deadlines.get(RunStatus(status))
        if seconds is None:
            return None
        return now_iso((now or datetime.now(UTC)) + timedelta(seconds=seconds))

    # -- creating -------------------------------------------------------------------------------------------

    def create(self, item: dict[str, Any]) -> bool:
        """Write a new run; False when a run with that id exists already."""
        stamp = now_iso()
        item = {"created_at": stamp, "updated_at": stamp, "outbox": {}, **item}
        status = item.get("status")
        # entered its first status when it was created (a caller's own clock, as the sweep's pass gives, included)
        item.setdefault("status_history", {status: item["created_at"]} if status else {})
        if status and not states.is_final(status) and "deadline_at" not in item:
            item["deadline_at"] = self.deadline_at(status)
        try:
            self.table.put_item(Item=to_item(item), ConditionExpression="attribute_not_exists(run_id)")
            return True
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise

    def claim(self, item: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        """Write the run in its initial state before any side effect. Returns (created, the item as stored):
        created is False when the run exists already (a redelivered or replayed event)."""
        created = self.create({**item, "status": states.INITIAL.value})
        stored = self.get(item["run_id"])
        assert stored is not None
        return created, stored

    # -- reading --------------------------------------------------------------------------------------------

    def get(self, run_id: str) -> dict[str, Any] | None:
        item = self.table.get_item(Key={"run_id": run_id}, ConsistentRead=True).get("Item")
        return from_item(item) if item else None

    def by_dataset(self, dataset: str, limit: int = 20) -> list[dict[str, Any]]:
        """The ``limit`` newest runs of one dataset, newest first (a page of a query holds at most 1 MB, and a
        run's item may be up to ~100 KB: every page is read until ``limit``)."""
        query: dict[str, Any] = {
            "IndexName": DATASET_INDEX,
            "KeyConditionExpression": Key("dataset").eq(dataset),
            "ScanIndexForward": False,
        }
        items: list[dict[str, Any]] = []
        while len(items) < limit:
            response = self.table.query(**query, Limit=limit - len(items))
            items.extend(from_item(i) for i in response["Items"])
            if "LastEvaluatedKey" not in response:
                break
            query["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        return items

    def succeeded_of_dataset(self, dataset: str, limit: int, max_read: int) -> list[dict[str, Any]]:
        """The ``limit`` newest SUCCEEDED runs of one dataset, newest first, past any number of rejected, failed or
        duplicate runs after them, reading at most ``max_read`` runs of the dataset."""
        found = self._of_dataset_where(dataset, Attr("status").eq(RunStatus.SUCCEEDED.value), max_read)
        return list(itertools.islice(found, limit))

    def with_content(
        self, dataset: str, content_sha256: str, statuses: tuple[str, ...], max_read: int
    ) -> Iterator[dict[str, Any]]:
        """Runs of one dataset whose data has this content hash and whose status is one of ``statuses``, newest
        first (by_dataset index, eventually consistent: re-read before acting). Reads at most ``max_read`` runs of
        the dataset, matching or not: older ones are not looked at."""
        return self._of_dataset_where(
            dataset,
            Attr("data.summary.content_sha256").eq(content_sha256) & Attr("status").is_in([str(s) for s in statuses]),
            max_read,
        )

    def _of_dataset_where(self, dataset: str, condition: Any, max_read: int) -> Iterator[dict[str, Any]]:
        """The runs of one dataset that meet ``condition`` (a filter), newest first, reading at most ``max_read``
        runs of the dataset, matching or not."""
        query: dict[str, Any] = {
            "IndexName": DATASET_INDEX,
            "KeyConditionExpression": Key("dataset").eq(dataset),
            "FilterExpression": condition,
            "ScanIndexForward": False,
        }
        read = 0
        while read < max_read:
            response = self.table.query(**query, Limit=min(100, max_read - read))
            read += max(1, response.get("ScannedCount", len(response["Items"])))
            yield from (from_item(i) for i in response["Items"])
            if "LastEvaluatedKey" not in response:
                return
            query["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def all_of_dataset(self, dataset: str) -> Iterator[dict[str, Any]]:
        """Every run of ``dataset`` (by_dataset index, eventually consistent)."""
        return self._query_all(IndexName=DATASET_INDEX, KeyConditionExpression=Key("dataset").eq(dataset))

    def by_status(self, status: str, limit: int = 20) -> list[dict[str, Any]]:
        """Runs in one status, newest first."""
        response = self.table.query(
            IndexName=STATUS_INDEX,
            KeyConditionExpression=Key("status").eq(status),
            ScanIndexForward=False,
            Limit=limit,
        )
        return [from_item(i) for i in response["Items"]]

    def count_in_status(self, status: str, *, excluding: Iterable[str] = (), condition: Any = None) -> int:
        """How many runs are in one status (status index, eventually consistent; every page counted), less those in
        ``excluding`` and, with ``condition`` (a filter), only those that meet it. Only the ids are returned."""
        excluded = set(excluding)
        query: dict[str, Any] = {
            "IndexName": STATUS_INDEX,
            "KeyConditionExpression": Key("status").eq(status),
            "ProjectionExpression": "run_id",
            **({"FilterExpression": condition} if condition is not None else {}),
        }
        return sum(1 for item in self._query_all(**query) if item["run_id"] not in excluded)

    def _query_all(self, **query: Any) -> Iterator[dict[str, Any]]:
        while True:
            response = self.table.query(**query)
            yield from (from_item(i) for i in response["Items"])
            if "LastEvaluatedKey" not in response:
                return
            query["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def all_in_status(self, status: str) -> Iterator[dict[str, Any]]:
        """Every run in one status, oldest first (the index is eventually consistent: re-read before acting)."""
        return self._query_all(
            IndexName=STATUS_INDEX, KeyConditionExpression=Key("status").eq(status), ScanIndexForward=True
        )

    def with_pending_notice(self) -> Iterator[str]:
        """Ids of runs with an unsent message, oldest first."""
        for item in self._query_all(
            IndexName=PENDING_NOTICE_INDEX,
            KeyConditionExpression=Key("notice_pending").eq(PENDING),
            ScanIndexForward=True,
        ):
            yield item["run_id"]

    # -- writing --------------------------------------------------------------------------------------------

    def update(self, run_id: str, **fields: Any) -> dict[str, Any]:
        """Set the given top-level attributes of an existing run (and updated_at). Never the status."""
        if "status" in fields:
            raise states.TransitionError("the status changes only through transition()")
        update = _Update()
        for name, value in {**fields, "updated_at": now_iso()}.items():
            update.set(name, value=value)
        response = self.table.update_item(
            Key={"run_id": run_id},
            UpdateExpression=update.expression(),
            ExpressionAttributeNames=update.names,
            ExpressionAttributeValues=update.values,
            ConditionExpression="attribute_exists(run_id)",
            ReturnValues="ALL_NEW",
        )
        return from_item(response["Attributes"])

    def _update_where(self, run_id: str, update: _Update, condition: str) -> dict[str, Any] | None:
        """Apply ``update`` only if ``condition`` holds: the item after it, or None when the condition failed."""
        try:
            response = self.table.update_item(
                Key={"run_id": run_id},
                UpdateExpression=update.expression(),
                ExpressionAttributeNames=update.names,
                ExpressionAttributeValues=update.values,
                ConditionExpression=condition,
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                return None
            raise
        return from_item(response["Attributes"])

    def update_if(
        self, run_id: str, status: RunStatus | str, *, unless_stop_requested: bool = False, **fields: Any
    ) -> dict[str, Any] | None:
        """Set attributes only while the run is still in ``status`` (and, with ``unless_stop_requested``, nobody
        asked for it to be stopped: ``transition``); None when it moved on."""
        update = _Update()
        for name, value in {**fields, "updated_at": now_iso()}.items():
            update.set(name, value=value)
        condition = f"{update.name('status')} = {update.value(str(status))}"
        if unless_stop_requested:
            condition += f" AND attribute_not_exists({update.name('stop_request')})"
        return self._update_where(run_id, update, condition)

    def record_once(self, run_id: str, name: str, value: Any, *, status: RunStatus | str) -> dict[str, Any] | None:
        """Set the attribute ``name`` unless it is set already, while the run is in ``status``: the item after it, or
        None when the attribute was there or the run moved on."""
        update = _Update()
        update.set(name, value=value)
        update.set("updated_at", value=now_iso())
        condition = (f"attribute_not_exists({update.name(name)}) AND "
                     f"{update.name('status')} = {update.value(str(status))}")
        return self._update_where(run_id, update, condition)

    def hold(self, run_id: str, name: str, value: dict[str, Any], *, status: RunStatus | str, taken_before: str,
             unless: str) -> dict[str, Any] | None:
        """Set the attribute ``name`` (a map with ``at``, when it was taken, and a ``token`` of its own) while the run
        is in ``status`` and has no attribute ``unless`` (what the holder is to write), unless another holds it since
        ``taken_before`` or later (one older is taken over: its holder died): the item after it, or None."""
        update = _Update()
        update.set(name, value=value)
        update.set("updated_at", value=now_iso())
        condition = (f"(attribute_not_exists({update.name(name)}) OR {update.name(name, 'at')} < "
                     f"{update.value(taken_before)}) AND attribute_not_exists({update.name(unless)}) AND "
                     f"{update.name('status')} = {update.value(str(status))}")
        return self._update_where(run_id, update, condition)

    def let_go(self, run_id: str, name: str, token: str) -> bool:
        """Remove the attribute ``name`` that ``hold`` set while it still holds ``token``; False otherwise."""
        update = _Update()
        update.remove(name)
        update.set("updated_at", value=now_iso())
        return self._update_where(run_id, update, f"{update.name(name, 'token')} = {update.value(token)}") is not None

    def forget_if(self, run_id: str, name: str, value: Any) -> bool:
        """Remove the attribute ``name`` while it still holds ``value``. False when it holds something else or
        nothing."""
        update = _Update()
        update.remove(name)
        update.set("updated_at", value=now_iso())
        condition = f"{update.name(name)} = {update.value(value)}"
        return self._update_where(run_id, update, condition) is not None

    def transition(
        self,
        run_id: str,
        sources: RunStatus | tuple[RunStatus, ...],
        target: RunStatus,
        *,
        notice: tuple[str, str] | None = None,
        remove: tuple[str, ...] = (),
        unless_stop_requested: bool = False,
        deadline_seconds: int | None = None,
        **fields: Any,
    ) -> dict[str, Any] | None:
        """Move the run from one of ``sources`` to ``target`` (compare-and-set on the status), setting ``fields``
        and, for a told state, recording ``notice`` (subject, body) as its unsent message in the same write.

        ``unless_stop_requested``: not if a person asked for the run to be stopped (``stop_request``,
        stop_requests.py), which then holds even against a step that read the run before the request.
        ``deadline_seconds``: the time the run has in ``target``, where not the repository's deadline for it.

        Returns the new item, or None when the run was not in any of ``sources`` (someone else moved it: re-read
        and decide)."""
        request = self.transition_request(
            run_id, sources, target, notice=notice, remove=remove, unless_stop_requested=unless_stop_requested,
            deadline_seconds=deadline_seconds, **fields
        )
        request["ReturnValues"] = "ALL_NEW"
        for attempt in range(2):
            try:
                return from_item(self.table.update_item(**request)["Attributes"])
            except ClientError as exc:
                if _conditional_failed(exc):
                    return None
                if exc.response["Error"]["Code"] != "ValidationException" or attempt:
                    raise
                self.add_maps(run_id)  # an item written before these maps existed
        return None

    def transition_request(
        self,
        run_id: str,
        sources: RunStatus | tuple[RunStatus, ...],
        target: RunStatus,
        *,
        notice: tuple[str, str] | None = None,
        remove: tuple[str, ...] = (),
        unless_stop_requested: bool = False,
        deadline_seconds: int | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """The conditional UpdateItem arguments of ``transition`` (Key, expressions, condition), unsent: to send
        alone, or as one part of a transaction (the champion pointer and a run's SUCCEEDED, champion.py)."""
        sources = (sources,) if isinstance(sources, RunStatus) else tuple(sources)
        target = RunStatus(target)
        states.check(sources, target)
        if (target in states.TOLD_STATUSES) != (notice is not None):
            raise states.TransitionError(f"entering {target} {'needs' if notice is None else 'takes no'} notice")
        stamp = now_iso()
        update = _Update()
        update.set("status", value=target.value)
        update.set("updated_at", value=stamp)
        update.set("status_history", target.value, value=stamp)
        deadline = self.deadline_at(target) if deadline_seconds is None else now_iso(
            datetime.now(UTC) + timedelta(seconds=deadline_seconds))
        if deadline is None:
            update.remove("deadline_at")
        else:
            update.set("deadline_at", value=deadline)
        for name, value in fields.items():
            update.set(name, value=value)
        for name in remove:
            update.remove(name)
        if notice is not None:
            subject, body = notice
            update.set(
                "outbox",
                target.value,
                value={"status": target.value, "subject": subject, "body": body, "created_at": stamp},
            )
            update.set("notice_pending", value=PENDING)
        placeholders = ", ".join(update.value(s.value) for s in sources)
        condition = f"{update.name('status')} IN ({placeholders})"
        if unless_stop_requested:
            condition += f" AND attribute_not_exists({update.name('stop_request')})"
        return {
            "Key": {"run_id": run_id},
            "UpdateExpression": update.expression(),
            "ExpressionAttributeNames": update.names,
            "ExpressionAttributeValues": update.values,
            "ConditionExpression": condition,
        }

    def add_maps(self, run_id: str) -> None:
        """Give an item written before the outbox and status_history maps existed both maps (empty)."""
        self.table.update_item(
            Key={"run_id": run_id},
            UpdateExpression="SET outbox = if_not_exists(outbox, :empty), "
            "status_history = if_not_exists(status_history, :empty)",
            ExpressionAttributeValues={":empty": {}},
            ConditionExpression="attribute_exists(run_id)",
        )

    # -- the outbox -----------------------------------------------------------------------------------------

    def lease_notice(self, run_id: str, status: str, lease_seconds: int, now: datetime | None = None) -> bool:
        """Take the right to send the message of ``status`` for ``lease_seconds``: only while it is unsent (and not
        dropped: ``supersede_notice``) and no other sender holds an unexpired lease. False when it was sent or dropped,
        or another sender holds it."""
        # Judged and taken on the later of the caller's clock and the wall clock: a reconciler pass hands in the time it
        # began, and a lease counted from there could already be over when its outbox loop comes (a handler sending
        # the same message on the wall clock would then take it and publish too).
        wall = datetime.now(UTC)
        now = max(now or wall, wall)
        update = _Update()
        entry = ("outbox", status)
        update.set(*entry, "lease_until", value=now_iso(now + timedelta(seconds=lease_seconds)))
        sent, lease = update.name(*entry, "sent_at"), update.name(*entry, "lease_until")
        superseded = update.name(*entry, "superseded_at")
        condition = (
            f"attribute_exists({update.name(*entry)}) AND attribute_not_exists({sent}) AND "
            f"attribute_not_exists({superseded}) AND "
            f"(attribute_not_exists({lease}) OR {lease} < {update.value(now_iso(now))})"
        )
        return self._update_where(run_id, update, condition) is not None

    def release_notice(self, run_id: str, status: str) -> None:
        """Give a lease back after a failed send, so the next attempt need not wait for it to expire."""
        update = _Update()
        update.remove("outbox", status, "lease_until")
        sent = update.name("outbox", status, "sent_at")
        try:
            self.table.update_item(
                Key={"run_id": run_id},
                UpdateExpression=update.expression(),
                ExpressionAttributeNames=update.names,
                ConditionExpression=f"attribute_not_exists({sent})",
            )
        except ClientError as exc:
            if not _conditional_failed(exc):
                raise

    def supersede_notice(self, run_id: str, status: str) -> dict[str, Any] | None:
        """Drop the message of ``status`` unless it went out (or a sender is sending it: it then goes out and is
        marked sent): ``unsent`` no longer lists it, so it is never sent. For the "queued" notice of a run that has
        started since; its words would be out of date. None when it was sent or is not there."""
        update = _Update()
        update.set("outbox", status, "superseded_at", value=now_iso())
        entry, sent = update.name("outbox", status), update.name("outbox", status, "sent_at")
        return self._update_where(run_id, update, f"attribute_exists({entry}) AND attribute_not_exists({sent})")

    def mark_sent(self, run_id: str, status: str, message_id: str) -> dict[str, Any] | None:
        """Record that the message of ``status`` went out (only if still unsent). None when it was already sent."""
        stamp = now_iso()
        update = _Update()
        update.set("outbox", status, "message_id", value=message_id)
        update.set("outbox", status, "sent_at", value=stamp)
        update.remove("outbox", status, "lease_until")
        if RunStatus(status) in FINAL_STATUSES:
            update.set("notification_message_id", value=message_id)
        condition = f"attribute_not_exists({update.name('outbox', status, 'sent_at')})"
        return self._update_where(run_id, update, condition)

    def clear_pending_notice(
        self, run_id: str, status: str, *, unless_set: tuple[str, ...] = (), updated_at: str | None = None
    ) -> bool:
        """Take the run out of the pending-notice index, provided its status is still ``status`` (so no
        transition added a message since the caller saw every message sent), none of ``unless_set`` was written
        since (a debt an ended run keeps in the index, written after its end) and, given ``updated_at``, nothing
        was written since the caller's read (a withdrawal owed meanwhile: every write but the outbox's leases and
        marks sets ``updated_at``). False when it moved on."""
        condition = Attr("status").eq(status)
        for name in unless_set:
            condition &= Attr(name).not_exists()
        if updated_at is not None:
            condition &= Attr("updated_at").eq(updated_at)
        try:
            self.table.update_item(
                Key={"run_id": run_id},
                UpdateExpression="REMOVE notice_pending",
                ConditionExpression=condition,
            )
            return True
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise


def messages(item: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The run's messages (its outbox entries: status, subject, body, created_at, and sent_at / message_id once
    sent, or superseded_at once dropped unsent), oldest first."""
    entries = [e for e in (item.get("outbox") or {}).values() if isinstance(e, dict)]
    return sorted(entries, key=lambda e: e.get("created_at", ""))


def dropped_unsent(entry: Mapping[str, Any]) -> bool:
    """Whether an outbox entry was dropped before it went out (``supersede_notice``; one a sender was publishing as it
    was dropped goes out all the same, and is then sent)."""
    return bool(entry.get("superseded_at")) and not entry.get("sent_at")


def dropped_while_leased(entry: Mapping[str, Any]) -> bool:
    """Whether an entry dropped unsent had been leased by a sender that neither marked it sent nor gave it back (both
    take the lease off; a dropped entry is leased no more): it died after Publish, or before it, or is publishing it
    still, its lease over or not. It may have gone out."""
    return dropped_unsent(entry) and bool(entry.get("lease_until"))


def out_of_date(item: Mapping[str, Any], entry: Mapping[str, Any]) -> bool:
    """Whether an unsent message no longer says what is true: the "queued" notice of a run that has started since
    (``supersede_notice`` drops it; a sender drops it too, should the start have died before doing so)."""
    return entry.get("status") == RunStatus.QUEUED.value and RunStatus.TUNING.value in (item.get("status_history") or {})


def unsent(item: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The run's messages not sent yet, oldest first (not those dropped unsent: ``supersede_notice``)."""
    return [e for e in messages(item) if not e.get("sent_at") and not dropped_unsent(e)]


def outcome_message(item: Mapping[str, Any]) -> dict[str, Any] | None:
    """The message of the run's outcome (the entry of its final status); None while the run has not ended, or when
    an ended run has none recorded."""
    status = item.get("status")
    if not states.is_final(status):
        return None
    entry = (item.get("outbox") or {}).get(status)
    return entry if isinstance(entry, dict) else None
