"""The reconciler: level-triggered, in the manner of a Kubernetes controller.

Every few minutes (an EventBridge Scheduler schedule) it first takes back the start events StartTuning's
dead-letter queue holds (``dead_letters``: an object whose event failed before its run was claimed gets its run)
and claims the run of each dropped file whose event never came at all (``missed_drops``: incoming/ listed), then reads every non-final run from the ``by_status`` index, reads what is (the run item,
DescribeHyperParameterTuningJob, DescribeProcessingJob), and takes at most one
idempotent step per run through the same core functions the event handlers call: ``start_tuning`` /
``launch`` for a claim, ``start_evaluation`` when the tuning job ended, ``record_results`` when the evaluation
job ended, ``end_run`` for a run past its state's deadline; for a run a person asked to stop (stop_requests.py) it
ends it if no tuning job started, else stops its running job. Then it sends every unsent message
(``by_pending_notice``, where an ended run that owes the withdrawal of a package approval, or the stop of a job
made after it ended, also stays until it is settled: withdrawal.py, job_stops.py), frees slots whose holder ended,
starts queued runs in free slots, and settles the champions' package approvals (former_champions.py: as many datasets
as its time allows, going on from where the last pass stopped), before it restarts stale claims. It never trusts that
an event arrived, and a lost, late, repeated or out-of-order event only delays a run until the next pass.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from reviewtune.core import (
    aws_errors,
    claims,
    display,
    former_champions,
    job_stops,
    names,
    outbox,
    queue_wait,
    slots,
    states,
    stop_requests,
    withdrawal,
)
from reviewtune.core.clients import AwsClients
from reviewtune.core.config import Settings
from reviewtune.core.dead_letters import TakenBack, take_back_start_events
from reviewtune.core.evaluation import start_evaluation, stop_evaluation_job
from reviewtune.core.failures import end_run, repository
from reviewtune.core.missed_drops import Swept, claim_missed_drops
from reviewtune.core.outbox import send_pending
from reviewtune.core.reasons import bounded
from reviewtune.core.results import record_results
from reviewtune.core.runs import RunsRepository, RunStatus, now_iso, parse_iso
from reviewtune.core.tuning import (
    dropped_object,
    launch_or_queue,
    run_id_of,
    start_queued_runs,
    start_tuning,
    stop_tuning_job,
    stop_unstarted,
)

logger = Logger(child=True)
T = TypeVar("T")

# A claim this long untouched without its data prepared is one whose start_tuning died (start_tuning's Timeout is 300
# s; an attempt that takes a claim over, such as Lambda's retry of the event, touches it first).
STALE_CLAIM_SECONDS = 900
START_ERROR_MAX_CHARS = 500
STALE_CLAIM = "stale claim"
MAX_RESTARTS_PER_PASS = 3  # a pass that does not know its invocation's time left: each reads and splits a file
# A pass restarts stale claims while its invocation has at least this long left, each: the start of the largest file
# the start takes took 42-117 s (bench/start_memory.py, 2026-12-06), so a burst of claims (an S3 outage dead-letters
# many drops at once) is restarted within the claims' deadline instead of a few a pass, and a pass nearly spent
# restarts none rather than one that its end would kill.
RESTART_SECONDS_RESERVED = 150
# The unsent messages are sent while the invocation has at least this long left (the first run's always): an SNS
# that stalls (each Publish up to clients.SNS_CALL_MAX_SECONDS) leaves the rest for the next pass instead of spending
# every pass, so the slots and the queue, and a restart when a claim waits for one, still get their turn.
TAIL_SECONDS_RESERVED = 30  # slots, the queue, former champions: a few calls each
# The former champions are settled, one dataset after the other, while the invocation has at least this long left
# (and a restart's time besides when a stale claim waits for one): a dataset's settling is a few calls, each retried
# with back-off when throttled; a pass that the invocation's end cuts there has reported its counts already
# (``before_restarts``), and keeps the place it saved last and its marks (champion_rotation.py).
CHAMPIONS_SECONDS_RESERVED = 15
OUTBOX_SECONDS_RESERVED = RESTART_SECONDS_RESERVED + TAIL_SECONDS_RESERVED
# The runs get their steps while the invocation has at least this long left (the first run's always): slow steps
# (an evaluation's start describes every trial; SageMaker slow to answer) leave the other runs for the next pass, so
# that the messages, the slots and the queue still get their turn (unless one step outlasts the reserve itself), and
# the restarts of stale claims (found among the runs, restarted last) what time is left.
RUNS_SECONDS_RESERVED = TAIL_SECONDS_RESERVED + 60
# The runs are stepped state by state (claims, queued, tuning, evaluating: a queued run past its deadline is ended
# before the runs at work free their slots), and each state after the one being stepped keeps this much of the pass:
# thousands of queued runs (a burst of files) leave part of theirs for the next pass rather than always leave the
# runs at work, whose lost events only the pass makes up for. Within a state the runs are stepped in an order drawn
# anew each pass (``pass_order``), so that the runs a short pass leaves are not the same ones every pass.
STATUS_SECONDS_RESERVED = 30
# The incoming/ sweep lists and claims while the invocation has at least this long left: the runs' steps, then the
# outbox and what comes after it, keep their time when thousands of drops missed their events.
SWEEP_SECONDS_RESERVED = OUTBOX_SECONDS_RESERVED + 60
SAGEMAKER_ENDED = ("Completed", "Failed", "Stopped")
PREFIX_CHANGED = "JobNamePrefix changed during its start"  # a claim named under an earlier prefix, in runs show
# A TUNING run past its deadline whose tuning job ended before it (the job's event lost, passes missed) still starts
# its evaluation this long after the deadline; later, the deadline ends it.
LATE_STEP_GRACE_SECONDS = 24 * 3600


@dataclass
class Pass:
    """What one reconciler pass found and did."""

    checked: int = 0
    stuck: int = 0  # runs found past their state's deadline (ended FAILED)
    steps: dict[str, str] = field(default_factory=dict)  # run id -> the step taken
    sent: int = 0
    late_messages: int = 0  # messages SNS still refused this pass, recorded over outbox.LATE_SECONDS ago
    withdrawn: int = 0  # ended runs whose package approval was withdrawn again (withdrawal.py)
    former_champions: int = 0  # packages set by the champions' settling: former ones to pending, the champion's approved
    jobs_stopped: int = 0  # jobs made for runs that had already ended, stopped (job_stops.py)
    started: int = 0
    freed_slots: int = 0
    errors: dict[str, str] = field(default_factory=dict)
    dead_letters: TakenBack = field(default_factory=TakenBack)
    missed_drops: Swept = field(default_factory=Swept)

    def summary(self) -> dict[str, Any]:
        return {
            "dead_letters": self.dead_letters.summary(),
            "missed_drops": self.missed_drops.summary(),
            "checked": self.checked,
            "stuck": self.stuck,
            "steps": self.steps,
            "sent": self.sent,
            "late_messages": self.late_messages,
            "withdrawn": self.withdrawn,
            "former_champions": self.former_champions,
            "jobs_stopped": self.jobs_stopped,
            "started": self.started,
            "freed_slots": self.freed_slots,
            "errors": self.errors,
        }


def reconcile(settings: Settings, clients: AwsClients, now: datetime | None = None,
              seconds_left: Callable[[], float] | None = None,
              before_restarts: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """One pass over every non-final run, then the outbox, the slots and the queue, the former champions, then stale
    claims. One run's error is logged and counted, never stops the pass. ``seconds_left``: the invocation's remaining
    time (None: MAX_RESTARTS_PER_PASS restarts, former_champions.MAX_SETTLED_PER_PASS datasets settled).
    ``before_restarts``: given the pass's summary so far, before the former champions and the restarts of stale
    claims, either of which can end the invocation (the handler publishes the pass's counts there, so that a pass
    killed in them still counts the runs it ended and the drops it claimed)."""
    now = now or datetime.now(UTC)
    runs = repository(settings, clients)
    result = Pass()
    stale: list[dict[str, Any]] = []
    try:  # first, so that an object known only to the dead-letter queue gets its run in this pass
        result.dead_letters = take_back_start_events(settings, clients, now)
    except Exception as exc:  # noqa: BLE001 - the queue unreachable: the runs still get their pass
        logger.exception("taking back dead-lettered start events failed")
        result.errors["dead_letters"] = f"{type(exc).__name__}: {exc}"
    try:  # then the drops whose event never came: their runs are claimed, and restarted once stale like any claim
        result.missed_drops = claim_missed_drops(
            settings, clients, now,
            out_of_time=lambda: seconds_left is not None and seconds_left() < SWEEP_SECONDS_RESERVED)
        if result.missed_drops.failed:  # counted in ReconcileErrors like any refusal of the pass
            result.errors["missed_drops"] = (f"{result.missed_drops.failed} version(s) without a run could not be "
                                             "looked up or claimed (logged); a later pass tries again")
    except Exception as exc:  # noqa: BLE001 - S3 or DynamoDB failing: the next pass lists again
        logger.exception("looking for dropped files without a run failed")
        result.errors["missed_drops"] = f"{type(exc).__name__}: {exc}"
    left: list[str] = []  # runs not stepped: this pass's time was nearly spent
    for position, status in enumerate(states.NON_FINAL_STATUSES):
        reserve = RUNS_SECONDS_RESERVED + STATUS_SECONDS_RESERVED * (len(states.NON_FINAL_STATUSES) - 1 - position)
        # the index unreadable for a moment: the runs of the pages read still get their step, the rest of the pass runs
        for listed in pass_order(_read_until_failure(runs.all_in_status(status), result, f"list:{status}"), now):
            run_id = listed["run_id"]
            if result.checked and seconds_left is not None and seconds_left() < reserve:
                left.append(run_id)
                continue
            result.checked += 1
            try:
                run = runs.get(run_id)
                if run is None or states.is_final(run["status"]):
                    continue
                step = reconcile_run(run, runs, settings, clients, now)
                if step == STALE_CLAIM:
                    stale.append(run)
                    continue
                if step == "past deadline":
                    result.stuck += 1
                if step:
                    result.steps[run_id] = step
            except Exception as exc:  # noqa: BLE001 - one run must not stop the pass
                logger.exception("reconciling a run failed", extra={"run_id": run_id})
                result.errors[run_id] = f"{type(exc).__name__}: {exc}"
    if left:
        logger.warning("the pass's time is nearly spent: the other runs wait for the next pass",
                       extra={"left": len(left)})
        result.errors["runs"] = (f"{len(left)} run(s) left for the next pass: this pass's time was nearly spent "
                                 "(slow steps?)")
    # the slots, the queue and the claims below still get their turn when this listing fails
    pending = _read_until_failure(runs.with_pending_notice(), result, "list:pending")
    reserve = OUTBOX_SECONDS_RESERVED if stale else TAIL_SECONDS_RESERVED  # a restart's time only when one waits
    for index, run_id in enumerate(pending):
        if index and seconds_left is not None and seconds_left() < reserve:
            logger.warning("the pass's time is nearly spent: the other messages wait for the next pass",
                           extra={"left": len(pending) - index})
            result.errors["outbox"] = (f"{len(pending) - index} run(s) with messages to send left for the next pass: "
                                       "this pass's time was nearly spent (a slow SNS?)")
            break
        item = None
        try:
            item = runs.get(run_id)
            if item is not None and withdrawal.owed(item):
                withdrawal.settle(runs, clients, item, now)
                result.withdrawn += 1
        except Exception as exc:  # noqa: BLE001 - the message is still sent; the next pass settles it
            logger.exception("withdrawing an ended run's package approval failed", extra={"run_id": run_id})
            result.errors[run_id] = f"{type(exc).__name__}: {exc}"
        try:
            if item is not None and job_stops.pending(item):
                result.jobs_stopped += job_stops.settle(runs, clients, item, now)
        except Exception as exc:  # noqa: BLE001 - the next pass stops it again
            logger.exception("stopping a job made for an ended run failed", extra={"run_id": run_id})
            result.errors[run_id] = f"{type(exc).__name__}: {exc}"
        sent: list[str] = []
        try:
            send_pending(runs, clients.sns, settings.topic_arn, run_id, now, sent=sent)
        except Exception as exc:  # noqa: BLE001
            logger.exception("sending a message failed", extra={"run_id": run_id})
            result.errors[run_id] = f"{type(exc).__name__}: {exc}"
            result.late_messages += _late_messages(runs, run_id, item, now)
        result.sent += len(sent)
    try:
        result.freed_slots = free_slots_of_ended_runs(runs, clients)
    except Exception as exc:  # noqa: BLE001 - queued runs are still started in the slots free already
        logger.exception("freeing the slots of ended runs failed")
        result.errors["slots"] = f"{type(exc).__name__}: {exc}"
    try:
        for outcome in start_queued_runs(settings, clients, now, raise_transient=False):
            if outcome.get("status") == RunStatus.TUNING:
                result.started += 1
            elif "error" in outcome:
                result.errors[outcome["run_id"]] = outcome["error"]
    except Exception as exc:  # noqa: BLE001 - the queue unreadable: the next pass starts them
        logger.exception("starting queued runs failed")
        result.errors["queue"] = f"{type(exc).__name__}: {exc}"
    # the pass's counts reported before the two steps whose calls can outlast the invocation (the champions' SageMaker
    # calls, each retried with back-off; a restart's read of a file)
    if before_restarts is not None:
        try:
            before_restarts(result.summary())
        except Exception:  # noqa: BLE001 - the counts are the pass's report, never a reason to skip the steps after
            logger.exception("reporting the pass before its restarts failed")
    # after the slots and the queue, and keeping a restart's time when a stale claim waits for one: with thousands of
    # datasets, a pass settles those its time allows and the next goes on from there (former_champions.settle_all)
    champions_reserve = CHAMPIONS_SECONDS_RESERVED + (RESTART_SECONDS_RESERVED if stale else 0)
    try:  # one Approved package per dataset: the champion's
        result.former_champions = former_champions.settle_all(
            runs, clients.sagemaker, now,
            out_of_time=lambda: seconds_left is not None and seconds_left() < champions_reserve)
    except Exception as exc:  # noqa: BLE001 - the next pass settles them
        logger.exception("settling the approvals of former champions failed")
        result.errors["former_champions"] = f"{type(exc).__name__}: {exc}"
    # Last: a restart reads and splits a file, and one that runs out of time or memory ends the invocation, which no
    # except clause sees. Everything above is done by then; the claim's deadline (checked above) still ends it once a
    # restart has tried it (or claims.UNRESTARTED_CLAIM_GRACE_SECONDS past it, restarted or not).
    # Claims restarted least often first: one whose restarts keep dying goes behind the others.
    stale.sort(key=lambda run: (int(run.get("restarts") or 0), str(run.get("updated_at"))))
    for count, run in enumerate(stale):
        # each only while the invocation has the time for it (a restart counted, then killed by the invocation's end,
        # would blame the file for the pass's lack of time); MAX_RESTARTS_PER_PASS when that time is not known
        out_of_time = (count >= MAX_RESTARTS_PER_PASS if seconds_left is None
                       else seconds_left() < RESTART_SECONDS_RESERVED)
        if out_of_time:
            break
        try:
            result.steps[run["run_id"]] = restart_claim(run, runs, settings, clients, now)
        except Exception as exc:  # noqa: BLE001
            logger.exception("restarting a claim failed", extra={"run_id": run["run_id"]})
            result.errors[run["run_id"]] = f"{type(exc).__name__}: {exc}"
    logger.info("reconciler pass", extra=result.summary())
    return result.summary()


def pass_order(listed: list[T], now: datetime) -> list[T]:
    """``listed`` in an order drawn from the pass's clock: the same for the same ``now``, another each pass."""
    ordered = list(listed)
    random.Random(now.isoformat()).shuffle(ordered)
    return ordered


def _read_until_failure(listing: Iterator[T], result: Pass, key: str) -> list[T]:
    """What a paged listing gives until a page cannot be read; that failure is logged and counted under ``key``."""
    read: list[T] = []
    try:
        for item in listing:
            read.append(item)
    except Exception as exc:  # noqa: BLE001 - a later pass lists again
        logger.exception("listing failed", extra={"listing": key, "read": len(read)})
        result.errors[key] = f"{type(exc).__name__}: {exc}"
    return read


def restart_claim(run: dict[str, Any], runs: RunsRepository, settings: Settings, clients: AwsClients,
                  now: datetime | None = None) -> str:
    """Start a stale claim over from its recorded source (start_tuning's own code: it reads and splits the file).

    Counted first (``restarts``, which also makes the claim fresh for STALE_CLAIM_SECONDS): a restart that runs out
    of time or memory leaves no other trace, and the count puts that claim behind the others in later passes and
    names what happened in its deadline's reason. A first restart (late past its deadline in a burst, or just
    before it) gives the claim a claim's time from ``now`` (claims.renewed_deadline), so that the start it makes has
    it for SageMaker's next tries of a throttled tuning job; later restarts do not move it."""
    now = now or datetime.now(UTC)
    if run_id_of(dropped_object(run), settings) != run["run_id"]:
        return _end_claim_named_otherwise(run, runs, settings, clients, now)
    restarts = int(run.get("restarts") or 0) + 1
    fields: dict[str, Any] = {"restarts": restarts}
    if restarts == 1 and (deadline := claims.renewed_deadline(run, runs, now)) is not None:
        fields["deadline_at"] = deadline
    if runs.update_if(run["run_id"], RunStatus.CLAIMED, **fields) is None:
        return "claim moved on"
    try:
        return f"claim restarted: {start_tuning(dropped_object(run), settings, clients)['status']}"
    except Exception as exc:
        # kept for the deadline's reason; the write also puts the next restart STALE_CLAIM_SECONDS later
        runs.update_if(run["run_id"], RunStatus.CLAIMED, start_error=bounded(aws_errors.describe(exc), START_ERROR_MAX_CHARS))
        raise


def _end_claim_named_otherwise(run: dict[str, Any], runs: RunsRepository, settings: Settings, clients: AwsClients,
                               now: datetime) -> str:
    """A stale claim named under another JobNamePrefix than the stack's now (the prefix changed while its start was
    unfinished, which README says not to do): a start now would claim the file version a second run under the new
    name, and the claim's own jobs would bear a name the stack's rules and permissions no longer match. It ends
    FAILED at once, with what happened (its message says how to tune the file again: ``runs retry``); recorded first
    as the deadline's end is (stop_requests.record_deadline), so that a person's stop asked meanwhile holds."""
    reason = (f"its start had not finished when the stack's JobNamePrefix changed (the run is named under another "
              f"prefix than {settings.job_name_prefix!r}): it cannot start under the new one; reviewtune ended it")
    recorded = stop_requests.record_deadline(runs, run, why=reason, now=now, occasion=PREFIX_CHANGED)
    if recorded is None:
        return "moved on"  # a person's stop, or a late start, came first: the next pass takes it from there
    final, why = stop_requests.outcome(recorded)
    ended = end_run(runs, settings, clients, run["run_id"], stage="tuning", status=final, reason=why,
                    only_from=(RunStatus.CLAIMED,))
    return "moved on" if ended.get("moved_on") else f"claim named under another prefix ended: {ended['status']}"


def reconcile_run(
    run: dict[str, Any], runs: RunsRepository, settings: Settings, clients: AwsClients, now: datetime
) -> str | None:
    """Take at most one step for one non-final run; returns what it did (None: nothing to do)."""
    status = RunStatus(run["status"])
    run_id = run["run_id"]
    stopping = stop_requests.requested(run)
    deadline = run.get("deadline_at")
    past_deadline = bool(deadline) and parse_iso(deadline) < now
    if (past_deadline and status is RunStatus.QUEUED and not stopping
            and (why := queue_wait.wait_on(run, runs, clients.runs_table, now))):
        return f"queued past its deadline: waits {why}"
    if past_deadline and now < claims.ended_by(run) and claims.awaits_first_restart(run):
        # a file never given its turn (claims.py): restarted first
        return STALE_CLAIM if _stale(run, now) else None
    # first: a step that keeps failing cannot hold a run past it; but a tuning job that ended before the deadline
    # (its event lost) gets its step below
    ended_in_time = _tuning_job_ended_in_time(run, status, clients, now) if past_deadline and not stopping else None
    if past_deadline and ended_in_time is None:
        by_person = stopping and not stop_requests.is_deadline(run)
        if not stopping:
            # recorded before any job is stopped (stop_requests.py): a step that read the run before it cannot move
            # it on after, with a job stopped here; a run that moved on meanwhile (its job just made, a new
            # deadline) is not stuck, and its job is left alone
            run = stop_requests.record_deadline(
                runs, run, why=_deadline_reason(run, status, settings.run_deadlines.get(status), now), now=now)
            if run is None:
                return "moved on"
        _stop_jobs(run, clients)
        # a person's request whose job did not say it stopped in time still ends the run as the person asked
        final, reason = stop_requests.outcome(run)
        ended = end_run(runs, settings, clients, run_id, stage=_stage(run, status), status=final, reason=reason,
                        only_from=(status,))
        return "moved on" if ended.get("moved_on") else (
            "past deadline, stopped on request" if by_person else "past deadline")
    if stopping and status in (RunStatus.CLAIMED, RunStatus.QUEUED):
        verb = f"ended ({stop_requests.ended_for(run)})" if stop_requests.is_deadline(run) else "stopped on request"
        return f"{verb}: {stop_unstarted(run, settings, clients)['status']}"
    if status is RunStatus.CLAIMED:
        if run.get("data"):
            if aws_errors.is_due(run.get("tuning_start"), now):
                return f"start: {launch_or_queue(run, settings, clients)['status']}"
            return None
        return STALE_CLAIM if _stale(run, now) else None  # restarted at the end of the pass (restart_claim)
    if status is RunStatus.TUNING:
        try:
            job = ended_in_time or clients.sagemaker.describe_hyper_parameter_tuning_job(
                HyperParameterTuningJobName=run_id)
        except ClientError as exc:
            return _job_missing(run, status, f"the tuning job {run_id}", exc, runs, settings, clients, now)
        job_status = job["HyperParameterTuningJobStatus"]
        # a run asked to stop does not wait for the next try of a throttled evaluation job: it starts none
        if job_status in SAGEMAKER_ENDED and (stopping or aws_errors.is_due(run.get("evaluation_start"), now)):
            return f"tuning {job_status}: {start_evaluation(run_id, job_status, settings, clients)['status']}"
        if stopping and job_status == "InProgress":  # the command's own stop refused, lost, or not allowed
            stop_tuning_job(clients, run_id)
            return "tuning job stopped on request"
        return None
    if status is RunStatus.EVALUATING:
        job_name = run.get("evaluation_job_name") or names.evaluation_job_name(run_id)
        try:
            job = clients.sagemaker.describe_processing_job(ProcessingJobName=job_name)
        except ClientError as exc:
            return _job_missing(run, status, f"the evaluation job {job_name}", exc, runs, settings, clients, now)
        job_status = job["ProcessingJobStatus"]
        if job_status in SAGEMAKER_ENDED:
            return f"evaluation {job_status}: {record_results(job_name, job_status, job, settings, clients)['status']}"
        if stopping and job_status == "InProgress":
            stop_evaluation_job(clients, run_id, job_name)
            return "evaluation job stopped on request"
        return None
    return None  # QUEUED: started below when a slot is free


def _job_missing(run: dict[str, Any], status: RunStatus, job: str, exc: ClientError, runs: RunsRepository,
                 settings: Settings, clients: AwsClients, now: datetime) -> str:
    """A run whose job SageMaker does not know (deleted by a person, or never made) ends FAILED once it has been in
    its state for STALE_CLAIM_SECONDS, saying so, instead of holding its slot until its deadline; raises otherwise
    (throttled, denied for a moment, or a job created moments ago that the API does not show yet)."""
    entered = (run.get("status_history") or {}).get(status.value) or run["updated_at"]
    if not aws_errors.not_found(exc) or now - parse_iso(entered) < timedelta(seconds=STALE_CLAIM_SECONDS):
        raise exc
    final, reason = RunStatus.FAILED, f"{job} cannot be read: {aws_errors.text(exc)}"
    if stop_requests.requested(run):  # a person asked to stop it: nothing to record, and stopped is what was asked
        final, reason = stop_requests.outcome(run)
    stage = "tuning" if status is RunStatus.TUNING else "evaluation"
    ended = end_run(runs, settings, clients, run["run_id"], stage=stage, status=final, reason=reason,
                    only_from=(status,))
    return "moved on" if ended.get("moved_on") else f"{stage} job missing"


def _tuning_job_ended_in_time(
    run: dict[str, Any], status: RunStatus, clients: AwsClients, now: datetime
) -> dict[str, Any] | None:
    """The description of the tuning job a TUNING run waits on when it ended before the run's deadline (its
    state-change event lost or dead-lettered, the passes in between missed), within ``LATE_STEP_GRACE_SECONDS`` after
    it (else None): its trials are the run's, and its evaluation gets a deadline of its own. Past the grace, the deadline ends it as any other (a step
    that keeps failing cannot hold the run for ever). Not an EVALUATING run: record_results keeps clear of its
    deadline (registration.within_retry_window), so that no approval lands after the deadline's end withdrew it."""
    deadline = parse_iso(run["deadline_at"])
    if status is not RunStatus.TUNING or now > deadline + timedelta(seconds=LATE_STEP_GRACE_SECONDS):
        return None
    try:
        job = clients.sagemaker.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=run["run_id"])
    except ClientError as exc:
        if aws_errors.not_found(exc):
            return None  # no job to have ended: the deadline ends the run as before
        raise  # throttled, or not allowed for a moment: the next pass reads it again (within the grace)
    at = job.get("HyperParameterTuningEndTime")
    in_time = job["HyperParameterTuningJobStatus"] in SAGEMAKER_ENDED and isinstance(at, datetime) and at <= deadline
    return job if in_time else None


def _stale(claim: dict[str, Any], now: datetime) -> bool:
    """A claim untouched for STALE_CLAIM_SECONDS (the caller knows it has no data: its start died, or never came)."""
    return now - parse_iso(claim.get("updated_at") or claim["created_at"]) > timedelta(seconds=STALE_CLAIM_SECONDS)


def _late_messages(runs: RunsRepository, run_id: str, read_before: dict[str, Any] | None, now: datetime) -> int:
    """The run's late messages after a send was refused, on a fresh read: those sent before the refusal do not count.
    The pass's earlier read stands in when DynamoDB does not answer either."""
    try:
        item = runs.get(run_id) or read_before
    except Exception:  # noqa: BLE001 - a count for the metric; the send's own error is the one recorded
        logger.exception("reading the run again to count its late messages failed", extra={"run_id": run_id})
        item = read_before
    return outbox.late(item, now) if item is not None else 0


def free_slots_of_ended_runs(runs: RunsRepository, clients: AwsClients) -> int:
    """Give back the slots of runs that are final or gone (a crash between the final write and the release)."""
    freed = 0
    for run_id in slots.holders(clients.runs_table):
        run = runs.get(run_id)
        if run is None or states.is_final(run["status"]):
            slots.release(clients.runs_table, run_id)
            freed += 1
    return freed


def _stage(run: dict[str, Any], status: RunStatus) -> str:
    """The stage a run past its deadline failed at, in the words the other failures use: tuning (from its claim to its
    tuning job's end), evaluation (from the start of the evaluation job: tuned, its evaluation job not started yet)."""
    if status is RunStatus.EVALUATING or (status is RunStatus.TUNING and run.get("evaluation_start")):
        return "evaluation"
    return "tuning"


def _deadline_reason(run: dict[str, Any], status: RunStatus, seconds: int | None, now: datetime) -> str:
    """Why a run past its deadline ends: the deadline, and the last thing known to have held it up. The deadline is
    named as the time the run was given in ``status``, from its entry to its deadline (set when it entered, under the
    settings of that day, and moved since where a claim's or a throttled start's was): ``seconds``, the stack's
    setting now, only where that is not known, or for a queued run whose deadline ran from the last pass that saw
    runs ahead of it work."""
    entered = (run.get("status_history") or {}).get(status.value)
    waited = status is RunStatus.QUEUED and run.get("queue_waited_for") and entered
    given = seconds if waited else _time_given(run, entered, seconds)
    reason = (
        f"the run stayed {status} longer than its deadline ({display.duration(given) if given else display.MISSING}, RUN_STATE_DEADLINES)"
    )
    if waited:
        # its deadline moved on while runs ahead worked (queue_wait.py): it ran from the last such pass
        reason += (f" after the runs ahead of it last worked ({', '.join(run['queue_waited_for'])}), queued "
                   f"{display.duration((now - parse_iso(entered)).total_seconds())} in all")
    reason += "; reviewtune ended it"
    # the start SageMaker was still refusing in this state: the tuning job's before TUNING, the evaluation job's in it
    waiting_for, attempt = {
        RunStatus.CLAIMED: ("tuning job", run.get("tuning_start")),
        RunStatus.QUEUED: ("tuning job", run.get("tuning_start")),
        RunStatus.TUNING: ("evaluation job", run.get("evaluation_start")),
    }.get(status, ("", None))
    attempt = attempt or {}
    if status is RunStatus.CLAIMED and run.get("start_error"):
        return f"{reason}; its last start failed with {run['start_error']}"
    if claims.awaits_first_restart(run):
        return (f"{reason}; no restart reached it within {display.duration(claims.UNRESTARTED_CLAIM_GRACE_SECONDS)} "
                "of its deadline (the reconciler's passes ended before their restarts)")
    if status is RunStatus.CLAIMED and run.get("restarts") and not run.get("data"):
        return (f"{reason}; it was started over {run['restarts']} time(s) and no start finished: each ran out of the "
                "function's time or memory (a file too large to split in one invocation?)")
    if attempt.get("last_error"):
        return (f"{reason}; SageMaker had not started its {waiting_for} after {aws_errors.attempts_made(attempt)}: "
                f"{attempt['last_error']}")
    return reason


def _time_given(run: dict[str, Any], entered: str | None, seconds: int | None) -> float | None:
    """From when the run entered its status to its deadline; ``seconds`` when either is not recorded."""
    deadline = run.get("deadline_at")
    if not entered or not deadline:
        return seconds
    given = (parse_iso(deadline) - parse_iso(entered)).total_seconds()
    return given if given > 0 else seconds


def _stop_jobs(run: dict[str, Any], clients: AwsClients) -> None:
    """Stop the SageMaker job of a run that is being ended, so that it stops costing: a throttled stop raises, and a
    later pass ends the run once the stop went through (nothing looks at an ended run's job)."""
    if run["status"] in (RunStatus.CLAIMED, RunStatus.QUEUED, RunStatus.TUNING):
        # a CLAIMED or QUEUED run's job may exist too: created by a start whose answer or next write was lost
        stop_tuning_job(clients, run["run_id"], before_end=True)
        if run["status"] == RunStatus.TUNING:  # and so may a TUNING run's evaluation job, the same way
            stop_evaluation_job(clients, run["run_id"], names.evaluation_job_name(run["run_id"]), before_end=True)
        return
    if run["status"] == RunStatus.EVALUATING and run.get("evaluation_job_name"):
        stop_evaluation_job(clients, run["run_id"], run["evaluation_job_name"], before_end=True)


__all__ = ["Pass", "now_iso", "reconcile", "reconcile_run", "restart_claim"]
