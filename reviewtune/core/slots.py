"""The spend guard: at most MaxConcurrentRuns runs hold a slot (are starting, TUNING or EVALUATING) at once.

The slots are one item of the runs table (``run_id`` = ``#slots``, which no run id can be) holding the string set
``holders``. Taking a slot is one conditional ``ADD`` (only if the set is smaller than the limit or already holds
the run), giving it back one ``DELETE``; both are idempotent, so a retried or replayed step can neither take a
second slot nor free someone else's. Two files dropped at once race on that single item: DynamoDB applies the two
conditional writes one after the other, so the second sees the first's holder and fails when the set is full.
A run keeps its slot from just before its tuning job starts until it reaches a final state; the reconciler frees
slots whose holder is final (a crash between the final write and the release).
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

SLOTS_KEY = "#slots"


def acquire(table: Any, run_id: str, limit: int) -> bool:
    """Take a slot for ``run_id`` (True), or find every slot taken by other runs (False)."""
    try:
        table.update_item(
            Key={"run_id": SLOTS_KEY},
            UpdateExpression="ADD holders :run",
            ConditionExpression="attribute_not_exists(holders) OR contains(holders, :id) OR size(holders) < :limit",
            ExpressionAttributeValues={":run": {run_id}, ":id": run_id, ":limit": limit},
        )
        return True
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return False
        raise


def release(table: Any, run_id: str) -> None:
    """Give back the slot of ``run_id`` (nothing when it holds none)."""
    table.update_item(
        Key={"run_id": SLOTS_KEY},
        UpdateExpression="DELETE holders :run",
        ExpressionAttributeValues={":run": {run_id}},
    )


def holders(table: Any) -> set[str]:
    item = table.get_item(Key={"run_id": SLOTS_KEY}, ConsistentRead=True).get("Item") or {}
    return set(item.get("holders") or ())
