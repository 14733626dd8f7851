"""Duplicate content: a file version whose bytes are those of a run of the same dataset that is in progress or
succeeded starts nothing; its run ends DUPLICATE, pointing to that run (``SKIP_DUPLICATE_CONTENT``).

The content is the sha256 of the object's bytes (``data.summary.content_sha256``, computed while reading). Two
places find the earlier run, both in the runs table:

- The content marker, exact. One item per (dataset, content): ``run_id = "#content#<sha256 of both>"`` (no run id
  can take that form; the item has no ``status``, ``dataset`` or ``created_at``, so no index shows it). Its
  ``holder`` is the run that owns the content. A run becomes the holder with one conditional write, only while the
  marker holds what the run read (no holder, or a holder that ended without a result: FAILED, STOPPED, gone);
  otherwise the holder is the earlier run. DynamoDB applies conditional writes on one item one after the other, so
  of two identical files dropped at the same moment exactly one becomes the holder and the other ends DUPLICATE,
  although neither can see the other's run in an (eventually consistent) index yet.
- The ``by_dataset`` index, newest first, for runs that began before their dataset had a marker (at most
  ``MAX_RUNS_CHECKED`` runs of the dataset are read).

A run a person asked to stop (stop_requests.py) keeps no content: it ends STOPPED, so the same file dropped again
meanwhile is tuned. A holder still ``CLAIMED`` counts as in progress: it took the marker after reading the file without fault and is
splitting it and starting its job. Should that start fail, the earlier duplicate stays DUPLICATE (its message
named the run, whose own outcome message follows); retrying the duplicate (retries.py) or dropping the file again
then tunes it. ``content_kept_by`` reads, without writing, whether a run keeps a content (a retry asks it first).
"""

from __future__ import annotations

import hashlib
from typing import Any

from botocore.exceptions import ClientError

from reviewtune.core import stop_requests
from reviewtune.core.runs import RunsRepository, now_iso
from reviewtune.core.states import RunStatus

MARKER_PREFIX = "#content#"
# A run in one of these states keeps its content from being tuned again.
KEEPS_CONTENT = (RunStatus.QUEUED, RunStatus.TUNING, RunStatus.EVALUATING, RunStatus.SUCCEEDED)
HOLDS_MARKER = (RunStatus.CLAIMED, *KEEPS_CONTENT)
MAX_RUNS_CHECKED = 500  # runs of one dataset read from the by_dataset index, newest first
_CONFLICT_RETRIES = 5


class ContentContendedError(RuntimeError):
    """The content marker kept changing under this run (the event is delivered again)."""


def marker_key(dataset: str, content_sha256: str) -> str:
    """The key of the content marker of ``content_sha256`` in ``dataset`` (fixed length, whatever the name)."""
    digest = hashlib.sha256(f"{dataset}\n{content_sha256}".encode("utf-8", "surrogatepass")).hexdigest()
    return MARKER_PREFIX + digest


def earlier_run(
    runs: RunsRepository, run_id: str, dataset: str, content_sha256: str
) -> dict[str, Any] | None:
    """The run of ``dataset`` with the same content that is in progress or succeeded, or None: then ``run_id``
    holds the content marker and goes on (a retry of the same run finds the marker its own)."""
    return _indexed_keeper(runs, run_id, dataset, content_sha256) or _hold_marker(runs, run_id, dataset, content_sha256)


def _indexed_keeper(runs: RunsRepository, run_id: str, dataset: str, content_sha256: str) -> dict[str, Any] | None:
    """A run other than ``run_id`` found through the by_dataset index that keeps this content, re-read (the index may
    be behind)."""
    for candidate in runs.with_content(dataset, content_sha256, KEEPS_CONTENT, MAX_RUNS_CHECKED):
        if candidate["run_id"] != run_id:
            current = runs.get(candidate["run_id"])
            if _keeps_content(current, KEEPS_CONTENT):
                return current
    return None


def content_kept_by(
    runs: RunsRepository, dataset: str, content_sha256: str, run_id: str
) -> dict[str, Any] | None:
    """The run other than ``run_id`` that keeps this content of ``dataset`` from being tuned again (in progress or
    succeeded; the marker's holder still CLAIMED counts), or None: a read, nothing is written."""
    marker = runs.table.get_item(Key={"run_id": marker_key(dataset, content_sha256)}, ConsistentRead=True)
    holder = (marker.get("Item") or {}).get("holder")
    if holder and holder != run_id:
        held = runs.get(holder)
        if _keeps_content(held, HOLDS_MARKER):
            return held
    return _indexed_keeper(runs, run_id, dataset, content_sha256)


def _keeps_content(run: dict[str, Any] | None, statuses: tuple[RunStatus, ...]) -> bool:
    """Whether ``run`` keeps its content from being tuned again: in one of ``statuses``, and not asked to stop (it
    ends STOPPED: stop_requests.py)."""
    return run is not None and run["status"] in statuses and not stop_requests.requested(run)


def _hold_marker(
    runs: RunsRepository, run_id: str, dataset: str, content_sha256: str
) -> dict[str, Any] | None:
    key = marker_key(dataset, content_sha256)
    for _ in range(_CONFLICT_RETRIES):
        marker = runs.table.get_item(Key={"run_id": key}, ConsistentRead=True).get("Item") or {}
        holder = marker.get("holder")
        if holder == run_id:
            return None
        if holder:
            held = runs.get(holder)
            if _keeps_content(held, HOLDS_MARKER):
                return held
        condition = "attribute_not_exists(holder)" if holder is None else "holder = :seen"
        values: dict[str, Any] = {
            ":me": run_id,
            ":sha": content_sha256,
            ":dataset": dataset,
            ":now": now_iso(),
        }
        if holder is not None:
            values[":seen"] = holder
        try:
            runs.table.update_item(
                Key={"run_id": key},
                UpdateExpression="SET holder = :me, content_sha256 = :sha, content_dataset = :dataset, "
                "updated_at = :now",
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
            )
            return None
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
    raise ContentContendedError(f"the content marker of run {run_id} kept changing; the event is retried")
