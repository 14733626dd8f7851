"""A queued run past its deadline while the queue still moves: it waits on instead of failing as stuck.

QUEUED's deadline (``RunStateDeadlines``) ends a run whose queue has stopped. A burst of files deeper than the slots
makes a run wait several whole runs, each working within its own deadline: behind k queued runs with N slots about
ceil((k + 1) / N) runs, longer than any fixed deadline. While another run holding a slot is tuning or evaluating, the
queue moves (that run ends by its own deadline at the latest, and its end starts the oldest queued run), so the
reconciler moves the queued run's deadline one QUEUED deadline on instead of ending it. Runs that hold a slot but are
themselves queued (a throttled start) do not count: two of them would keep each other waiting; nor does a queued run
that holds a slot itself wait for other runs: its own start is failing. Its deadline moves only past the next try of
a start SageMaker throttled (the start gives up after START_MAX_ATTEMPTS); a start that fails otherwise ends at it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from reviewtune.core import slots
from reviewtune.core.runs import RunsRepository, RunStatus, now_iso, parse_iso

WORKING = (RunStatus.TUNING, RunStatus.EVALUATING)
# After a throttled start's next try is due, a reconciler pass (every 5 minutes by default) makes it within this; a
# slower schedule gets one more move once the try is due (queue_wait._until_its_next_try).
RETRY_GRACE_SECONDS = 1800


def runs_working_ahead(runs: RunsRepository, runs_table: Any, run_id: str) -> list[str]:
    """The runs that hold a slot and are tuning or evaluating, while ``run_id`` holds none; [] when it holds one (a
    queued run holding a slot waits for no run: its own start is failing, see ``wait_on``)."""
    return _working(runs, slots.holders(runs_table), run_id)


def _working(runs: RunsRepository, holders: set[str], run_id: str) -> list[str]:
    if run_id in holders:
        return []
    return [holder for holder in sorted(holders) if (runs.get(holder) or {}).get("status") in WORKING]


def wait_on(run: dict[str, Any], runs: RunsRepository, runs_table: Any, now: datetime) -> str | None:
    """Move a QUEUED run's passed deadline on, and say why: one QUEUED deadline from ``now`` while runs ahead of it
    work (``queue_waited_for`` names those of this move), or, for a run holding a slot whose start SageMaker throttled,
    to just past its next try (the start's own limit of attempts ends it). None when the deadline holds: the queue
    has stopped, the start fails in a way it does not retry, or the run moved on or was asked to stop meanwhile."""
    holders = slots.holders(runs_table)  # one read for both questions
    if run["run_id"] in holders:
        return _until_its_next_try(run, runs, now)
    ahead = _working(runs, holders, run["run_id"])
    if not ahead:
        return None
    moved = runs.update_if(
        run["run_id"], RunStatus.QUEUED, unless_stop_requested=True,
        deadline_at=runs.deadline_at(RunStatus.QUEUED, now), queue_waited_for=ahead[:10],
    )
    return "behind runs at work" if moved is not None else None


def _until_its_next_try(run: dict[str, Any], runs: RunsRepository, now: datetime) -> str | None:
    """A throttled start's next try comes after the deadline, or is due and not yet made (no reconciler pass came in
    time): the deadline moves just past it. Once the try is due, once per recorded try (``deadline_moved_for_try``):
    a try that dies without recording anything leaves the deadline where it is, and the run ends at it."""
    start = run.get("tuning_start") or {}
    retry, tries = start.get("next_attempt_at"), start.get("attempts")
    if not retry or not run.get("deadline_at"):
        return None
    due = parse_iso(retry) <= now
    if due and run.get("deadline_moved_for_try") == tries:
        return None
    until = max(parse_iso(retry), now) + timedelta(seconds=RETRY_GRACE_SECONDS)
    if until <= parse_iso(run["deadline_at"]):
        return None
    marks = {"deadline_moved_for_try": tries} if due else {}
    # it no longer waits for runs ahead: its deadline's reason, should it end at it, is its start's
    moved = runs.update_if(run["run_id"], RunStatus.QUEUED, unless_stop_requested=True, deadline_at=now_iso(until),
                           queue_waited_for=[], **marks)
    return "for its start's next try" if moved is not None else None
