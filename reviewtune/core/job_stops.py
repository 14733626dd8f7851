"""Stopping a run's SageMaker jobs, and a job made for a run that had already ended: stopped until SageMaker took it.

Two steps make a job and then write the run's new state: ``tuning.launch`` (CreateHyperParameterTuningJob, then
CLAIMED or QUEUED -> TUNING) and ``evaluation.start_evaluation`` (CreateProcessingJob, then TUNING -> EVALUATING).
When that write finds the run already ended (the reconciler ended it at its deadline between the two), the job just
made has no run to follow it, and nothing would look at it again: it would train or evaluate, costing, until its own
time limit. So the step stops it at once (``stop_made_for_ended_run``), and when SageMaker does not take that stop
(throttling, no answer) the job is owed a stop: its name is kept on the ended run (``tuning_job_to_stop`` /
``evaluation_job_to_stop``) and the run stays in the outbox's pending index (``outbox.send_pending`` does not clear it)
until a reconciler pass has stopped it (``settle``: SageMaker took the stop, or says the job is not running).
The same holds for a job that a start which gave up (too many throttled tries, a refusal) may have made in an
earlier attempt whose answer was lost (``stop_if_ended``).

A step can also die (its timeout) between its create and its write, while the reconciler or a person ends the run:
no step is left to find the job. So each step records on the run that it is making the job (``tuning_job_making`` /
``evaluation_job_making``: when it began, written while the run is still in the state the job is made from) before
its create. A run that ended otherwise than SUCCEEDED with such a record and no sign that the job became its own
(``tuning_job_arn`` / ``evaluation_job_name``, written with the step's move) may have a job nobody follows: it stays
in the pending index, and each pass stops that job (a job never made is nothing to stop) until ``MAKING_SETTLE_SECONDS``
have passed since the record, when no attempt that wrote it can still be making the job (``pending``, ``settle``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from reviewtune.core import aws_errors, names, states
from reviewtune.core.clients import AwsClients
from reviewtune.core.runs import PENDING, RunsRepository, RunStatus, now_iso, parse_iso

logger = Logger(child=True)

# kind -> (the run attribute that keeps its owed stop, the words for it, SageMaker's Stop call for a job name)
KINDS: dict[str, tuple[str, str, Callable[[Any, str], object]]] = {
    "tuning": (
        "tuning_job_to_stop",
        "tuning job",
        lambda sagemaker, name: sagemaker.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName=name),
    ),
    "evaluation": (
        "evaluation_job_to_stop",
        "evaluation job",
        lambda sagemaker, name: sagemaker.stop_processing_job(ProcessingJobName=name),
    ),
}

ATTRIBUTES = tuple(attribute for attribute, _, _ in KINDS.values())
# kind -> (the record that a step is making the job, the attribute its move writes once the job is the run's own, the
# job's name for a run id)
MAKING: dict[str, tuple[str, str, Callable[[str], str]]] = {
    "tuning": ("tuning_job_making", "tuning_job_arn", lambda run_id: run_id),
    "evaluation": ("evaluation_job_making", "evaluation_job_name", names.evaluation_job_name),
}
# Longer than any function's timeout (300 s): the attempt that recorded it is making a job has ended by then.
MAKING_SETTLE_SECONDS = 900


def record_making(runs: RunsRepository, run_id: str, kind: str, status: RunStatus | str) -> dict[str, str] | None:
    """Before a step creates the run's job of ``kind``: record that it is making it (when, and which attempt), while
    the run is still in ``status``. The record (the step's own: ``made_here`` forgets only that one); None when the
    run moved on (the step then makes nothing)."""
    record = {"at": now_iso(), "attempt": uuid.uuid4().hex}
    return record if runs.update_if(run_id, status, **{MAKING[kind][0]: record}) is not None else None


def stop_job(clients: AwsClients, run_id: str, kind: str, job_name: str, *, before_end: bool = False) -> None:
    """Stop the run's job of ``kind``; a job never created is nothing to stop. Best effort by default: a refusal is
    logged, not raised. ``before_end``: the run ends after this call, and then nothing looks at its job again, so a
    job that is not there or not running (SageMaker's ValidationException) counts as stopped, and a refusal worth
    another try (throttling, no answer) raises, for the step to be tried again (the event, the reconciler's next
    pass) while the run has not ended; one that is not (access denied) is logged and the run ends."""
    _, what, call = KINDS[kind]
    try:
        call(clients.sagemaker, job_name)
    except ClientError as exc:
        if aws_errors.not_found(exc) or (before_end and aws_errors.code(exc) == "ValidationException"):
            return
        if before_end and aws_errors.transient(exc):
            raise
        logger.warning(f"could not stop the run's {what}", extra={"run_id": run_id, "error": aws_errors.text(exc)})
    except BotoCoreError:
        if before_end:
            raise
        logger.warning(f"could not stop the run's {what}: no answer", extra={"run_id": run_id})


def stop_made_for_ended_run(runs: RunsRepository, clients: AwsClients, run: dict[str, Any], kind: str,
                            job_name: str, making: dict[str, str] | None = None) -> bool:
    """Stop the job of ``kind`` just made for ``run``, which had already ended. True when SageMaker took the stop (or
    the job is not running); False when it did not, and the stop is owed on the run for the reconciler.

    Raises, after logging the job's name, only when neither the stop nor the record of the debt went through."""
    run_id = run["run_id"]
    try:
        stop_job(clients, run_id, kind, job_name, before_end=True)
        stopped = True
    except (ClientError, BotoCoreError) as exc:
        _owe_stop(runs, run, kind, job_name, aws_errors.describe(exc))  # raises when not even that: the record stays
        stopped = False
    made_here(runs, run_id, kind, making)
    return stopped


def _owe_stop(runs: RunsRepository, run: dict[str, Any], kind: str, job_name: str, error: str) -> None:
    """Keep the stop SageMaker did not take on the ended run, for the reconciler's passes; raises, after logging the
    job's name, when that write fails too."""
    run_id = run["run_id"]
    attribute, what, _ = KINDS[kind]
    try:
        runs.update_if(run_id, run["status"], **{attribute: job_name, "notice_pending": PENDING})
    except (ClientError, BotoCoreError):
        logger.exception(
            f"a {what} made for an ended run could neither be stopped nor recorded to be stopped: stop it by hand",
            extra={"run_id": run_id, "job_name": job_name, "stop_error": error},
        )
        raise
    logger.warning(
        f"could not stop the {what} made for an ended run; the reconciler stops it",
        extra={"run_id": run_id, "job_name": job_name, "error": error},
    )


def made_here(runs: RunsRepository, run_id: str, kind: str, stamp: dict[str, str] | None) -> None:
    """The step that recorded ``stamp`` (``record_making``) found the run ended and stopped its job (or recorded its
    stop owed): its record of making it is settled. Only while the record is still its own: another attempt that recorded since may
    still be making the job, and the passes look at it until its record is old. Best effort: a record left is
    settled by the passes."""
    if stamp is None:
        return
    try:
        runs.forget_if(run_id, MAKING[kind][0], stamp)
    except (ClientError, BotoCoreError) as exc:
        logger.info("the record of making the job stays for the reconciler",
                    extra={"run_id": run_id, "error": aws_errors.describe(exc)})


def stop_if_ended(runs: RunsRepository, clients: AwsClients, run_id: str, kind: str, job_name: str,
                  making: dict[str, str] | None = None) -> None:
    """After a step gave up starting the job of ``kind`` and ended the run: an earlier attempt whose answer was lost
    (the create took effect, then throttling or a timeout came back, or the function died) may have made the job,
    which now has no run to follow it. Stopped like a job made for an ended run (a job never made is nothing to
    stop); nothing for a run that did not end (it moved on: its job is followed) or SUCCEEDED."""
    item = runs.get(run_id)
    if item is not None and states.is_final(item["status"]) and item["status"] != RunStatus.SUCCEEDED:
        stop_made_for_ended_run(runs, clients, item, kind, job_name, making)


def owed(item: dict[str, Any]) -> dict[str, str]:
    """The stops the run owes: kind -> job name."""
    return {kind: item[attribute] for kind, (attribute, _, _) in KINDS.items() if item.get(attribute)}


def maybe_made(item: dict[str, Any]) -> dict[str, str]:
    """The jobs a step that died may have made for the run, which ended otherwise: kind -> job name."""
    if not states.is_final(item.get("status")) or item.get("status") == RunStatus.SUCCEEDED:
        return {}
    return {kind: name(item["run_id"]) for kind, (making, own, name) in MAKING.items()
            if item.get(making) and not item.get(own)}


def pending(item: dict[str, Any]) -> bool:
    """Whether the run stays in the pending index for a job to stop: one owed, or one a step may have made."""
    return bool(owed(item) or maybe_made(item))


def settle(runs: RunsRepository, clients: AwsClients, item: dict[str, Any], now: datetime | None = None) -> int:
    """Stop every job the run owes a stop, and forget each one SageMaker took; stop every job a step that died may
    have made, and forget each record ``MAKING_SETTLE_SECONDS`` old. Returns how many were settled.

    Raises when SageMaker refuses for now (the next pass tries again)."""
    now = now or datetime.now(UTC)
    settled = 0
    for kind, job_name in owed(item).items():
        stop_job(clients, item["run_id"], kind, job_name, before_end=True)
        runs.forget_if(item["run_id"], KINDS[kind][0], job_name)
        logger.info(f"the {KINDS[kind][1]} made for an ended run is stopped",
                    extra={"run_id": item["run_id"], "job_name": job_name})
        settled += 1
    for kind, job_name in maybe_made(item).items():
        stop_job(clients, item["run_id"], kind, job_name, before_end=True)  # none made: nothing to stop
        making = MAKING[kind][0]
        if now - parse_iso(item[making]["at"]) >= timedelta(seconds=MAKING_SETTLE_SECONDS):
            runs.forget_if(item["run_id"], making, item[making])
            logger.info(f"no {KINDS[kind][1]} is left running for the ended run",
                        extra={"run_id": item["run_id"], "job_name": job_name})
            settled += 1
    return settled
