"""A queued run past its deadline while the queue still moves: it waits on instead of failing as stuck.

QUEUED's deadline (``RunStateDeadlines``) ends a run whose queue has stopped. A burst of files deeper than the slots
makes a run wait several whole runs, each working within its own deadline: behind k queued runs with N slots about
ceil((k + 1) / N) runs, longer than any fixed deadline. While another run holding a slot is tuning or evaluating, the
queue moves (that run ends by its own deadline at the latest, and its end starts the oldest queued run), so the
reconciler moves the queued run's deadline one QUEUED deadline on instead of ending it. Runs that hold a slot but are
themselves queued (a throttled start) do not count: two of them would keep each other waiting; nor does a queued run
that holds a slot itself wait on: its start keeps failing, and its deadline is what ends it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from reviewtune.core import slots
from reviewtune.core.runs import RunsRepository, RunStatus

WORKING = (RunStatus.TUNING, RunStatus.EVALUATING)


def runs_working_ahead(runs: RunsRepository, runs_table: Any, run_id: str) -> list[str]:
    """The runs that hold a slot and are tuning or evaluating, while ``run_id`` holds none; [] when it holds one (a
    queued run holding a slot waits for no run: its own start keeps failing, which its deadline ends)."""
    holders = slots.holders(runs_table)
    if run_id in holders:
        return []
    working = []
    for holder in sorted(holders):
        item = runs.get(holder)
        if item is not None and item.get("status") in WORKING:
            working.append(holder)
    return working


def wait_on(run: dict[str, Any], runs: RunsRepository, runs_table: Any, now: datetime) -> dict[str, Any] | None:
    """Move a QUEUED run's deadline one QUEUED deadline on from ``now`` while runs ahead of it work (``waited_for``
    names them); the run as written, or None when the queue has stopped (no run working) or the run moved on or was
    asked to stop meanwhile."""
    ahead = runs_working_ahead(runs, runs_table, run["run_id"])
    if not ahead:
        return None
    return runs.update_if(
        run["run_id"], RunStatus.QUEUED, unless_stop_requested=True,
        deadline_at=runs.deadline_at(RunStatus.QUEUED, now), queue_waited_for=ahead[:10],
    )
