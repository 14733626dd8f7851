"""The job name prefixes a stack has used (``JobNamePrefix``): one item, ``#prefixes``, in the runs table.

A run's id is ``<JobNamePrefix>-<hash of its object version>``, so once the prefix changes, the same version is named
anew. A start event delivered again after the change (Lambda's retries of an event, for up to 6 hours; a dead letter
taken back, for up to 14 days) would then make a second run of a version that has one: two outcomes, two messages.
So each start records the stack's prefix here (once per prefix), and before it claims a new run looks for the
version's run under every other prefix recorded: one GetItem, and one more per earlier prefix (two in a bucket
without versioning, for the same bytes uploaded again: ``tuning.earlier_prefix_run``), only once the prefix has
changed. Prefixes used before this item existed are not recorded; the reconciler's sweep of ``incoming/`` looks
under the recorded ones first, then through a dataset's runs (``missed_drops.has_run``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reviewtune.core.runs import RunsRepository, now_iso

PREFIXES_KEY = "#prefixes"  # no run id can take that form; the item has no status, so no index shows it


def recorded(table: Any) -> set[str]:
    """The prefixes recorded so far."""
    item = table.get_item(Key={"run_id": PREFIXES_KEY}, ConsistentRead=True).get("Item") or {}
    return {str(prefix) for prefix in item.get("prefixes") or ()}


def record(table: Any, prefix: str) -> None:
    """Add ``prefix`` to the recorded ones (a set: adding it twice, or at once from two starts, keeps one)."""
    table.update_item(Key={"run_id": PREFIXES_KEY}, UpdateExpression="ADD prefixes :p SET updated_at = :t",
                      ExpressionAttributeValues={":p": {prefix}, ":t": now_iso()})


def run_under_another_prefix(
    runs: RunsRepository, prefix: str, run_of: Callable[[str], dict[str, Any] | None], known: set[str] | None = None
) -> dict[str, Any] | None:
    """The run of one dropped object under a prefix the stack had before ``prefix``, when there is one and none under
    ``prefix``; ``run_of(p)``: its run under the prefix ``p``, or None. ``prefix`` is recorded on the way. ``known``:
    the prefixes recorded, as a caller looking up many objects read them once (``prefix`` is added to it)."""
    known = recorded(runs.table) if known is None else known
    if prefix not in known:
        record(runs.table, prefix)
        known.add(prefix)
    for other in sorted(known - {prefix}):
        found = run_of(other)
        if found is not None:
            return None if run_of(prefix) is not None else found
    return None
