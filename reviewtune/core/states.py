"""The run as a state machine: its states, the transitions allowed between them, and which states are told.

One place for these facts. ``reviewtune/core/runs.py`` writes each transition as a conditional (compare-and-set)
update on the current status; docs/architecture.md draws the same diagram.

    (new) -> CLAIMED                      written before any side effect: a replay finds it and does nothing
    CLAIMED -> QUEUED | TUNING | REJECTED | DUPLICATE | FAILED | STOPPED
    QUEUED -> TUNING | FAILED | STOPPED    waits for a concurrency slot (MaxConcurrentRuns)
    TUNING -> EVALUATING | FAILED | STOPPED
    EVALUATING -> SUCCEEDED | FAILED | STOPPED

SUCCEEDED, FAILED, STOPPED, REJECTED and DUPLICATE are terminal: no later event moves a run out of them.
SageMaker's own statuses (InProgress, Completed, Failed, Stopping, Stopped) are kept as SageMaker spells them, in
the ``tuning.status`` / evaluation fields, never as run states.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    CLAIMED = "CLAIMED"
    QUEUED = "QUEUED"
    TUNING = "TUNING"
    EVALUATING = "EVALUATING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    STOPPED = "STOPPED"
    REJECTED = "REJECTED"
    DUPLICATE = "DUPLICATE"


TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.CLAIMED: frozenset(
        {
            RunStatus.QUEUED,
            RunStatus.TUNING,
            RunStatus.REJECTED,
            RunStatus.DUPLICATE,
            RunStatus.FAILED,
            RunStatus.STOPPED,  # a person stopped it before its tuning job started (stop_requests.py)
        }
    ),
    RunStatus.QUEUED: frozenset({RunStatus.TUNING, RunStatus.FAILED, RunStatus.STOPPED}),
    RunStatus.TUNING: frozenset({RunStatus.EVALUATING, RunStatus.FAILED, RunStatus.STOPPED}),
    RunStatus.EVALUATING: frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.STOPPED}),
}
INITIAL = RunStatus.CLAIMED
FINAL_STATUSES = frozenset(
    {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.STOPPED, RunStatus.REJECTED, RunStatus.DUPLICATE}
)
NON_FINAL_STATUSES = (RunStatus.CLAIMED, RunStatus.QUEUED, RunStatus.TUNING, RunStatus.EVALUATING)
# States of a run that never had a tuning job (a FAILED run may or may not have had one).
WITHOUT_TUNING_JOB = frozenset({RunStatus.CLAIMED, RunStatus.QUEUED, RunStatus.REJECTED, RunStatus.DUPLICATE})
# States people are told about: entering one records its message in the run's outbox in the same write.
TOLD_STATUSES = frozenset(
    {
        RunStatus.QUEUED,
        RunStatus.SUCCEEDED,
        RunStatus.FAILED,
        RunStatus.STOPPED,
        RunStatus.REJECTED,
        RunStatus.DUPLICATE,
    }
)
# How long a run may stay in each non-final state before the reconciler ends it FAILED (seconds; the
# RUN_STATE_DEADLINES environment variable overrides them, see config.py).
DEFAULT_DEADLINES: dict[RunStatus, int] = {
    RunStatus.CLAIMED: 3600,
    RunStatus.QUEUED: 75 * 3600,  # a whole run ahead at the defaults: TUNING's and EVALUATING's together
    RunStatus.TUNING: 3 * 86400,
    RunStatus.EVALUATING: 3 * 3600,
}


class TransitionError(ValueError):
    """A transition the state machine does not allow (a programming error, never a race)."""


def is_final(status: str | None) -> bool:
    return status in FINAL_STATUSES


def allowed(source: RunStatus | str, target: RunStatus | str) -> bool:
    return RunStatus(target) in TRANSITIONS.get(RunStatus(source), frozenset())


def check(sources: tuple[RunStatus, ...], target: RunStatus) -> None:
    bad = [s for s in sources if not allowed(s, target)]
    if bad:
        raise TransitionError(f"a run cannot go from {', '.join(bad)} to {target}")


def mermaid() -> str:
    """The state diagram as Mermaid source (docs/architecture.md shows it; a test keeps the two equal)."""
    lines = ["stateDiagram-v2", f"    [*] --> {INITIAL}"]
    for source, targets in TRANSITIONS.items():
        lines += [f"    {source} --> {target}" for target in sorted(targets)]
    lines += [f"    {status} --> [*]" for status in sorted(FINAL_STATUSES)]
    return "\n".join(lines)
