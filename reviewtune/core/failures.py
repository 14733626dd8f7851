"""Ending a run: the final transition (with its message in the outbox), then the steps every end takes."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from reviewtune.core import messages, slots, states, withdrawal
from reviewtune.core.clients import AwsClients
from reviewtune.core.config import Settings
from reviewtune.core.outbox import send_pending
from reviewtune.core.reasons import bounded
from reviewtune.core.runs import RunsRepository, RunStatus

logger = Logger(child=True)

_CONFLICT_RETRIES = 5


def conclude(runs: RunsRepository, settings: Settings, clients: AwsClients, run_id: str) -> None:
    """What follows a run's final transition, each step idempotent: free its slot, send its messages, start
    queued runs in the freed slot. A retry or the reconciler repeats whatever did not happen."""
    from reviewtune.core.tuning import start_queued_runs  # tuning ends runs through this module

    slots.release(clients.runs_table, run_id)
    try:
        send_pending(runs, clients.sns, settings.topic_arn, run_id)
    except Exception:
        # the freed slot goes to the oldest queued run now, not to whichever file comes next; the message is retried
        try:
            start_queued_runs(settings, clients, raise_transient=False)
        except Exception:  # noqa: BLE001 - the message's error is the one raised; the reconciler starts them
            logger.exception("starting queued runs after a refused message failed", extra={"run_id": run_id})
        raise
    start_queued_runs(settings, clients)


def already_final(
    runs: RunsRepository, settings: Settings, clients: AwsClients, item: dict[str, Any]
) -> dict[str, Any]:
    """A run that ended before this event or retry: finish what its end left undone, report it as a duplicate."""
    conclude(runs, settings, clients, item["run_id"])
    logger.info("run already ended", extra={"run_id": item["run_id"], "status": item["status"]})
    return {"run_id": item["run_id"], "status": item["status"], "duplicate": True}


def end_run(
    runs: RunsRepository,
    settings: Settings,
    clients: AwsClients,
    run_id: str,
    *,
    stage: str,
    status: RunStatus,
    reason: str,
    only_from: tuple[RunStatus, ...] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """Move the run from whatever non-final state it is in to FAILED or STOPPED (compare-and-set), with the failure
    message in its outbox; then conclude it. A run that is final already is left as it is. ``only_from``: the states
    the failure is about; a run that moved on from them meanwhile (another invocation did the step) is left too.
    ``reason`` is cut to ``reasons.REASON_MAX_CHARS`` (whatever made it: a file's or a job's text can be long)."""
    reason = bounded(reason)
    for _ in range(_CONFLICT_RETRIES):
        item = runs.get(run_id)
        if item is None:
            raise LookupError(f"no run {run_id} to end")
        current = RunStatus(item["status"])
        if states.is_final(current):
            return already_final(runs, settings, clients, item)
        if only_from is not None and current not in only_from:
            logger.info("run moved on meanwhile; not ended", extra={"run_id": run_id, "status": current.value})
            return {"run_id": run_id, "status": current.value, "moved_on": True}
        if not states.allowed(current, status):
            status = RunStatus.FAILED
        if current is RunStatus.QUEUED:  # it never left the queue: its tuning did not begin
            stage = messages.QUEUE_STAGE
        view = {**item, **fields, "failure_reason": reason}
        notice = messages.run_failed(view, stage, status.value, reason, settings.runs_table)
        moved = runs.transition(
            run_id, current, status, notice=notice, failure_reason=reason, failed_stage=stage, **fields
        )
        if moved is not None:
            break
    else:
        raise RuntimeError(f"run {run_id} kept changing while it was being ended")
    logger.warning("run ended", extra={"run_id": run_id, "stage": stage, "status": status.value, "reason": reason})
    if withdrawal.owed(moved):  # record_results had marked the package for approval: the run never became champion
        withdrawal.withdraw(clients, moved)
    conclude(runs, settings, clients, run_id)
    return {"run_id": run_id, "status": status.value, "reason": reason}


def repository(settings: Settings, clients: AwsClients) -> RunsRepository:
    return RunsRepository(clients.runs_table, settings.run_deadlines)
