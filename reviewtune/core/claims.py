"""Claims waiting for their first restart: one place for the rule the reconciler follows and the views and audit
explain.

A claim (``CLAIMED``) without its data is started over by the reconciler once stale (reconciler.restart_claim), a few
a pass. Past its deadline, a claim that no restart has tried yet is a file that never had its turn (a burst of them,
their events waiting in StartTuning's queue), not one whose start keeps dying: it is restarted first rather than
ended, for ``UNRESTARTED_CLAIM_GRACE_SECONDS`` past its deadline at most.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from reviewtune.core import stop_requests
from reviewtune.core.runs import RunsRepository, parse_iso
from reviewtune.core.states import RunStatus

# StartTuning's events wait in Lambda's queue 6 hours at most (its async MaximumEventAgeInSeconds), and reconciler
# passes that keep dying before their restarts must not hold a claim for ever.
UNRESTARTED_CLAIM_GRACE_SECONDS = 6 * 3600


def awaits_first_restart(run: dict[str, Any]) -> bool:
    """A claim without its data that no restart has tried (a person's stop ends it all the same)."""
    return (run.get("status") == RunStatus.CLAIMED.value and not stop_requests.requested(run) and not run.get("data")
            and not int(run.get("restarts") or 0))


def ended_by(run: dict[str, Any]) -> datetime | None:
    """When the reconciler ends the run at the latest if it has not moved on: its deadline, or for a claim that
    awaits its first restart, UNRESTARTED_CLAIM_GRACE_SECONDS after it. None without a deadline."""
    if not run.get("deadline_at"):
        return None
    deadline = parse_iso(run["deadline_at"])
    return deadline + timedelta(seconds=UNRESTARTED_CLAIM_GRACE_SECONDS) if awaits_first_restart(run) else deadline


def renewed_deadline(run: dict[str, Any], runs: RunsRepository, now: datetime) -> str | None:
    """The later of a claim's deadline and a claim's whole time from ``now``: what its first restart and the write of
    its data (the file read and split) give it, so that its start has a claim's time for SageMaker's next tries of a
    throttled tuning job. Once each, so a claim cannot be kept for ever."""
    renewed = runs.deadline_at(RunStatus.CLAIMED, now)
    current = run.get("deadline_at")
    if renewed is None or (current and parse_iso(current) >= parse_iso(renewed)):
        return current or renewed
    return renewed
