"""Where the reconciler's passes are in settling the champions (``former_champions.settle_all``): one item of the runs
table, ``#champions``.

- ``after``: the dataset the rotation reached last. A pass goes on with the names after it (the sparse by_champion
  index, in name order), and from the first name again once past the last: however many datasets have a champion, a
  pass settles those its time allows and the next goes on from there, so every champion is reached within a few
  passes. Written blind at the end of a pass's share (one reconciler runs at a time), as the ``#sweep`` place is.
- ``marks``: {dataset: token} of datasets whose pointer has work waiting, settled before the rotation: a champion
  that just changed (a replaced one's package to put back to pending, or its own approval that record_results gave up
  on: marked by the write that moved the pointer, ``champion.set_champion``), a package noted by a promotion that
  lost a race (``former_champions.note``), a settling SageMaker refused (the mark stays). At most ``MAX_MARKED`` at
  once; one not marked (a mark refused, or a write that died before it) waits for the rotation. A mark is taken off
  once its dataset is settled, and only if it is still the one the pass read: a pass that dies while settling keeps
  the mark, and a mark written meanwhile (its own token) stays for the next pass.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from reviewtune.core import aws_errors
from reviewtune.core.runs import now_iso

logger = Logger(child=True)

CURSOR_KEY = "#champions"  # no run id can take that form; the item has no status, so no index shows it
MAX_MARKED = 100  # dataset names are S3 key paths (1 KB at most): the item stays far under DynamoDB's 400 KB


@dataclass(frozen=True)
class Place:
    """The item as a pass reads it."""

    after: str | None = None
    marks: dict[str, str] = field(default_factory=dict)  # dataset -> the token of its mark


def read(table: Any) -> Place:
    item = table.get_item(Key={"run_id": CURSOR_KEY}, ConsistentRead=True).get("Item") or {}
    return Place(after=item.get("after") or None, marks={str(k): str(v) for k, v in (item.get("marks") or {}).items()})


def _warn(what: str, dataset: str, exc: Exception) -> None:
    error = aws_errors.describe(exc) if isinstance(exc, ClientError) else str(exc)
    logger.warning(what, extra={"dataset": dataset, "error": error})


def mark(table: Any, dataset: str) -> bool:
    """Have the next pass settle ``dataset`` before the rotation. Never raises: a mark not written (refused, or
    MAX_MARKED reached) leaves the dataset to the rotation; False then."""
    request = {
        "Key": {"run_id": CURSOR_KEY},
        "UpdateExpression": "SET marks.#dataset = :token",
        "ConditionExpression": "attribute_not_exists(marks) OR size(marks) < :most OR attribute_exists(marks.#dataset)",
        "ExpressionAttributeNames": {"#dataset": dataset},
        "ExpressionAttributeValues": {":token": f"{now_iso()} {uuid.uuid4().hex[:8]}", ":most": MAX_MARKED},
    }
    try:
        try:
            table.update_item(**request)
        except ClientError as exc:
            if aws_errors.code(exc) != "ValidationException":  # the item, or its map, not there yet
                raise
            table.update_item(Key={"run_id": CURSOR_KEY}, UpdateExpression="SET marks = if_not_exists(marks, :none)",
                              ExpressionAttributeValues={":none": {}})
            table.update_item(**request)
    except ClientError as exc:
        if not aws_errors.lost_race(exc):
            _warn("could not mark a champion for the next reconciler pass (its rotation reaches it)", dataset, exc)
        return False
    except BotoCoreError as exc:
        _warn("could not mark a champion for the next reconciler pass (its rotation reaches it)", dataset, exc)
        return False
    return True


def unmark(table: Any, dataset: str, token: str) -> None:
    """Take ``dataset``'s mark off once it is settled, if it is still the mark ``token`` the pass read. Never raises:
    a mark left is settled again by the next pass."""
    try:
        table.update_item(Key={"run_id": CURSOR_KEY}, UpdateExpression="REMOVE marks.#dataset",
                          ConditionExpression="marks.#dataset = :token",
                          ExpressionAttributeNames={"#dataset": dataset}, ExpressionAttributeValues={":token": token})
    except ClientError as exc:
        if not aws_errors.lost_race(exc):  # marked again meanwhile: that mark stays
            _warn("could not take a champion's mark off (the next pass settles it again)", dataset, exc)
    except BotoCoreError as exc:
        _warn("could not take a champion's mark off (the next pass settles it again)", dataset, exc)


def save_place(table: Any, after: str) -> None:
    """Keep where the next pass's rotation goes on from (just after ``after``)."""
    table.update_item(Key={"run_id": CURSOR_KEY}, UpdateExpression="SET #after = :after, updated_at = :now",
                      ExpressionAttributeNames={"#after": "after"},
                      ExpressionAttributeValues={":after": after, ":now": now_iso()})
