"""Where the reconciler's passes are in settling the champions (``former_champions.settle_all``): one item of the runs
table, ``#champions``.

- ``after``: the dataset the rotation reached last. A pass goes on with the names after it (the sparse by_champion
  index, in name order), and from the first name again once past the last: however many datasets have a champion, a
  pass settles those its time allows and the next goes on from there, so every champion is reached within a few
  passes. Written blind at the end of a pass's share (one reconciler runs at a time), as the ``#sweep`` place is.
- ``marked``: datasets whose pointer has work waiting, settled before the rotation: a champion just replaced (its
  package to put back to pending, marked by the write that moved the pointer: ``champion.set_champion``), a package
  noted by a promotion that lost a race (``former_champions.note``), a settling SageMaker refused (the pass marks it
  again). At most ``MAX_MARKED`` at once; one not marked (a mark refused, or a write that died before it) waits for
  the rotation. A pass takes a mark off before it settles the dataset, so a mark written meanwhile stays for the next
  pass.
"""

from __future__ import annotations

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
    marked: frozenset[str] = field(default_factory=frozenset)


def read(table: Any) -> Place:
    item = table.get_item(Key={"run_id": CURSOR_KEY}, ConsistentRead=True).get("Item") or {}
    return Place(after=item.get("after") or None, marked=frozenset(item.get("marked") or ()))


def mark(table: Any, dataset: str) -> bool:
    """Have the next pass settle ``dataset`` before the rotation. Never raises: a mark not written (refused, or
    MAX_MARKED reached) leaves the dataset to the rotation; False then."""
    try:
        table.update_item(Key={"run_id": CURSOR_KEY}, UpdateExpression="ADD marked :dataset",
                          ConditionExpression="attribute_not_exists(marked) OR size(marked) < :most",
                          ExpressionAttributeValues={":dataset": {dataset}, ":most": MAX_MARKED})
    except ClientError as exc:
        if not aws_errors.lost_race(exc):
            logger.warning("could not mark a champion for the next reconciler pass (its rotation reaches it)",
                           extra={"dataset": dataset, "error": aws_errors.describe(exc)})
        return False
    except BotoCoreError as exc:
        logger.warning("could not mark a champion for the next reconciler pass (its rotation reaches it)",
                       extra={"dataset": dataset, "error": str(exc)})
        return False
    return True


def unmark(table: Any, dataset: str) -> None:
    """Take ``dataset``'s mark off (a pass, before it settles it)."""
    table.update_item(Key={"run_id": CURSOR_KEY}, UpdateExpression="DELETE marked :dataset",
                      ExpressionAttributeValues={":dataset": {dataset}})


def save_place(table: Any, after: str) -> None:
    """Keep where the next pass's rotation goes on from (just after ``after``)."""
    table.update_item(Key={"run_id": CURSOR_KEY}, UpdateExpression="SET #after = :after, updated_at = :now",
                      ExpressionAttributeNames={"#after": "after"},
                      ExpressionAttributeValues={":after": after, ":now": now_iso()})
