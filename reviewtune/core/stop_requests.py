"""A person stops a run: ``reviewtune runs stop RUN_ID --reason TEXT``.

The request is recorded on the run first (``stop_request``: who, why, when), by one conditional write while the run
is in the state it was read in and not final. From then on every step that would move the run on honours it, so the
stop holds whatever fails, repeats or comes late:

- a run whose tuning job has not started (CLAIMED, QUEUED) starts none: ``launch_or_queue`` ends it STOPPED instead,
  the queue passes it by, and the reconciler's next pass ends it STOPPED (its slot freed, its message sent);
- a TUNING or EVALUATING run: the command stops its SageMaker job at once (best effort), and every reconciler pass
  stops it again while it still runs (the command's call refused, lost, or made without the permission). Once the
  job has ended, start_evaluation and record_results end the run STOPPED instead of evaluating, registering or
  deciding a champion: a stopped run never becomes champion, even when its job completed before the stop reached
  it. A job that failed on its own still ends the run FAILED, with SageMaker's reason.

The writes that move a run on (to TUNING, to EVALUATING, the mark before a package's approval, to SUCCEEDED) are
conditional on there being no request (``unless_stop_requested``), so a step that read the run just before the
request finds its write refused and ends the run STOPPED itself, stopping the job it just made.

The run's one outcome message is then the STOPPED one, naming who stopped it, when and why.

The reconciler ends a run past its state's deadline the same way: it records its own request first (``record_deadline``:
``kind`` deadline, by reviewtune, the deadline's reason), then stops the run's jobs, then ends it. The run then ends
FAILED with that reason (``outcome``) wherever it ends: a step that made a job just before the deadline (an
evaluation job whose run was still TUNING) finds its move refused and ends the run FAILED itself, never STOPPED
with a job's "ended Stopped" nobody asked for; one that moved the run on before the request finds the request
refused, and its run goes on with its new deadline, its job untouched.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from reviewtune.core import aws_errors, display, names, states
from reviewtune.core.champion import is_champion_key
from reviewtune.core.errors import ReviewtuneError
from reviewtune.core.reasons import PERSON_REASON_MAX_CHARS, bounded
from reviewtune.core.runs import RunsRepository, RunStatus, no_such_run, now_iso

_CONFLICT_RETRIES = 5


class StopError(ReviewtuneError):
    """The run cannot be stopped; the message says why."""


def requested(run: dict[str, Any]) -> bool:
    """Whether someone asked for the run to be stopped."""
    return isinstance(run.get("stop_request"), dict)


DEADLINE = "deadline"  # a request's ``kind`` when the reconciler ends a run past its deadline
DEADLINE_BY = "reviewtune"


def is_deadline(run: dict[str, Any]) -> bool:
    """Whether the run is being ended at its deadline (not stopped by a person)."""
    return requested(run) and run["stop_request"].get("kind") == DEADLINE


def ended_for(run: dict[str, Any]) -> str:
    """What reviewtune ends a run with a deadline's request for, in a few words: its deadline, or the request's
    ``occasion`` (record_deadline)."""
    return str(run["stop_request"].get("occasion") or "past its deadline")


def reason(run: dict[str, Any]) -> str:
    """The reason a run stopped on request ends with: who, when, why (the deadline's own reason for a deadline)."""
    request = run["stop_request"]
    if is_deadline(run):
        return str(request.get("reason"))
    return f"stopped by {request.get('by')} at {display.utc_time(request.get('at'))}: {request.get('reason')}"


def outcome(run: dict[str, Any]) -> tuple[RunStatus, str]:
    """The status and reason a run with a request ends with: STOPPED as a person asked, FAILED at its deadline."""
    return (RunStatus.FAILED if is_deadline(run) else RunStatus.STOPPED), reason(run)


def record_deadline(runs: RunsRepository, run: dict[str, Any], *, why: str, now: datetime | None = None,
                    occasion: str | None = None) -> dict[str, Any] | None:
    """Record that ``run``, past its deadline, is being ended FAILED with ``why``: one conditional write, while the
    run is in the state it was read in and nobody asked for a stop. The run as it is then; None when it moved on
    (a step moved it on meanwhile, or someone asked for a stop first: that request holds). ``occasion``: what
    reviewtune ends it for, in a few words, when not its deadline (``runs show`` puts it in the run's timeline)."""
    request = {"by": DEADLINE_BY, "kind": DEADLINE, "reason": why, "at": now_iso(now),
               **({"occasion": occasion} if occasion else {})}
    return runs.update_if(run["run_id"], run["status"], unless_stop_requested=True, stop_request=request)


def request_stop(
    runs: RunsRepository, run_id: str, *, why: str, by: str, now: datetime | None = None
) -> dict[str, Any]:
    """Record the request to stop ``run_id`` and return the run as it is then. A run asked to stop already keeps its
    first request (the call is then only a retry of the job's stop); a final run cannot be stopped."""
    if not why.strip():
        raise StopError("a stop needs a reason (--reason TEXT)")
    if not by.strip():  # the run's record says who asked
        raise StopError("a stop needs who asks for it")
    request = {"by": by, "reason": bounded(why.strip(), PERSON_REASON_MAX_CHARS), "at": now_iso(now)}
    for _ in range(_CONFLICT_RETRIES):
        run = None if is_champion_key(run_id) else runs.get(run_id)
        if run is None or "status" not in run:  # the slots item, a content marker: no run
            raise StopError(no_such_run(run_id))
        if states.is_final(run["status"]):
            raise StopError(f"run {run_id} is {run['status']} already: there is nothing to stop")
        if is_deadline(run):
            raise StopError(f"run {run_id} is {ended_for(run)} and being ended FAILED: {reason(run)}; the "
                            "reconciler's passes stop its jobs")
        if requested(run):
            return run
        # conditional on no request too: of two at once, the first stays (read again, it is returned)
        recorded = runs.update_if(run_id, run["status"], unless_stop_requested=True, stop_request=request)
        if recorded is not None:
            return recorded
    raise StopError(f"run {run_id} kept changing while the stop was being recorded; run the command again")


# What stopping a run's job now came to (``stop_job_now``).
STOPPING = "stopping"  # SageMaker took the stop
NOT_RUNNING = "not running"  # it refused: the job ended or is stopping already, or is not there
NO_JOB = "no job"  # a CLAIMED or QUEUED run: no tuning job started
FAILED = "failed"  # any other refusal: the reconciler stops the job on its next pass


def stop_job_now(sagemaker: Any, run: dict[str, Any]) -> tuple[str, str | None]:
    """Stop the SageMaker job a TUNING or EVALUATING run has running: one of the outcomes above, and AWS's answer
    when it failed."""
    run_id = run["run_id"]
    try:
        if run["status"] == RunStatus.TUNING:
            sagemaker.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName=run_id)
        elif run["status"] == RunStatus.EVALUATING:
            job = run.get("evaluation_job_name") or names.evaluation_job_name(run_id)
            sagemaker.stop_processing_job(ProcessingJobName=job)
        else:
            return NO_JOB, None
    except ClientError as exc:
        if aws_errors.code(exc) in ("ValidationException", "ResourceNotFound"):
            return NOT_RUNNING, aws_errors.text(exc)  # SageMaker refuses to stop a job that is not in progress
        return FAILED, aws_errors.text(exc)
    except BotoCoreError as exc:
        return FAILED, str(exc)
    return STOPPING, None
