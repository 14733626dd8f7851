"""record_results: store the evaluation of the best model and tell people how the run went."""

from __future__ import annotations

import json
import math
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from reviewtune.core import (
    aws_errors,
    costs,
    former_champions,
    messages,
    names,
    registry,
    report_annotation,
    s3_presence,
    states,
    stop_requests,
    withdrawal,
)
from reviewtune.core.champion import TRIES, ChampionChanged, Plan, RunMovedOn, set_champion
from reviewtune.core.clients import AwsClients
from reviewtune.core.config import Settings
from reviewtune.core.errors import EvaluationOutputError, RunNotReadyError
from reviewtune.core.evaluation import EVALUATION_OUTPUT
from reviewtune.core.failures import already_final, conclude, end_run, repository
from reviewtune.core.reasons import REASON_MAX_CHARS, bounded
from reviewtune.core.registration import (
    JOB_ENDED_AT,
    job_ended_at,
    not_decided,
    plan_champion,
    register,
    retrying,
    set_approval,
    test_rows,
)
from reviewtune.core.runs import RunsRepository, RunStatus, now_iso

logger = Logger(child=True)

EVALUATION_FILE = names.EVALUATION_FILE
CONFUSION_MATRIX_FILE = "confusion_matrix.png"
# What an evaluation.json may hold. The script writes ~2 KB of metrics; the run item (400 KB in all) keeps them,
# and a file the item could not hold would fail every SUCCEEDED write and leave the run EVALUATING until its deadline.
MAX_EVALUATION_BYTES = 1024 * 1024
MAX_METRICS_BYTES = 64 * 1024
MAX_EVALUATION_DEPTH = 16
DYNAMODB_MIN_MAGNITUDE = 1e-130
DYNAMODB_MAX_MAGNITUDE = 1e126
DYNAMODB_MAX_DIGITS = 38


def _output_uri(detail: dict[str, Any], settings: Settings, run_id: str) -> str:
    for output in (detail.get("ProcessingOutputConfig") or {}).get("Outputs", []):
        if output.get("OutputName") == EVALUATION_OUTPUT:
            return output["S3Output"]["S3Uri"].rstrip("/")
    return names.s3_uri(settings.bucket, names.evaluation_prefix(run_id).rstrip("/"))


PATH_PIECE_MAX_CHARS = 80  # a key of evaluation.json named in a reason: cut beyond this


def _unstorable(value: Any, path: str = "", depth: int = 0) -> str | None:
    """Why the run item could not hold ``value``, at its first such place, or None. DynamoDB stores no NaN or
    Infinity, numbers of magnitude 1e-130..1e126 and at most 38 digits, 32 levels of nesting, and no empty map key."""
    where = path or "(top)"
    if depth > MAX_EVALUATION_DEPTH:
        return f"{where} is nested more than {MAX_EVALUATION_DEPTH} levels deep"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{where} is not a finite number (NaN or Infinity)"
    if isinstance(value, float) and value and not DYNAMODB_MIN_MAGNITUDE <= abs(value) < DYNAMODB_MAX_MAGNITUDE:
        return f"{where} = {value!r} is outside the range a run record can hold"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= DYNAMODB_MAX_MAGNITUDE:
        return f"{where} is outside the range a run record can hold"
    if isinstance(value, int) and len(str(abs(value))) > DYNAMODB_MAX_DIGITS:  # boto3 refuses to round it
        return f"{where} has more than the {DYNAMODB_MAX_DIGITS} digits a run record can hold"
    if isinstance(value, dict) and "" in value:  # a map key is an attribute name: DynamoDB refuses an empty one
        return f"{where} has an empty key (\"\"), which a run record cannot hold"
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        piece = str(key) if len(str(key)) <= PATH_PIECE_MAX_CHARS else str(key)[:PATH_PIECE_MAX_CHARS - 3] + "..."
        found = _unstorable(item, f"{path}.{piece}" if path else piece, depth + 1)
        if found:
            return found
    return None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_evaluation(evaluation: Any, where: str) -> dict[str, Any]:
    """The parts of evaluation.json the run record and the message use, checked; a clear error otherwise."""
    if not isinstance(evaluation, dict) or not isinstance(evaluation.get("metrics"), dict):
        raise EvaluationOutputError(f"{where} has no metrics object")
    metrics = evaluation["metrics"]
    bad = _unstorable(evaluation)
    if bad:
        raise EvaluationOutputError(f"{where}: {bad}")
    size = len(json.dumps(metrics))
    if size > MAX_METRICS_BYTES:
        raise EvaluationOutputError(
            f"{where}: its metrics take {size:,} bytes, more than the {MAX_METRICS_BYTES:,} a run record keeps"
        )
    accuracy = (metrics.get("accuracy") or {}).get("value") if isinstance(metrics.get("accuracy"), dict) else None
    if not _number(accuracy):
        raise EvaluationOutputError(f"{where} has no metrics.accuracy.value number")
    if not 0.0 <= accuracy <= 1.0:
        raise EvaluationOutputError(f"{where}: accuracy {accuracy} is not between 0 and 1")
    for name in ("macro_f1", "weighted_f1"):
        if name in metrics and not (isinstance(metrics[name], dict) and _number(metrics[name].get("value"))):
            raise EvaluationOutputError(f"{where}: metrics.{name} has no value number")
    per_class = metrics.get("per_class", {})
    if not isinstance(per_class, dict):
        raise EvaluationOutputError(f"{where}: metrics.per_class is not an object")
    for label, scores in per_class.items():
        for key in ("precision", "recall", "f1", "support"):
            if not isinstance(scores, dict) or not _number(scores.get(key)):
                raise EvaluationOutputError(f"{where}: metrics.per_class.{label}.{key} is missing or not a number")
    return evaluation


def _champion_not_measured(evaluation: dict[str, Any]) -> str | None:
    """Why the evaluation job could not measure the champion it was given (its model unusable), naming that champion
    (the pointer may have moved on since)."""
    said = evaluation.get("champion_not_measured")
    if not isinstance(said, dict):
        return None
    return bounded(f"the evaluation job could not use the model of {said.get('champion_run_id')} "
                   f"({said.get('error')})", 500)


def _failure_reason(detail: dict[str, Any]) -> str | None:
    """Why the evaluation job failed: the script's own words (its ExitMessage) first, SageMaker's after them
    ("AlgorithmError: See job logs for more information" says little; "CapacityError: ..." alone says it all); one of
    them alone when the other says nothing more; the end kept when they are long (it says how the job ended)."""
    exit_message, failure = (str(detail.get(key) or "").strip() for key in ("ExitMessage", "FailureReason"))
    if not exit_message or exit_message in failure:
        return failure or None
    if not failure or failure in exit_message:
        return exit_message
    return bounded(f"{exit_message} ({failure})", REASON_MAX_CHARS, keep_end=True)


def read_evaluation(s3: Any, output_uri: str) -> dict[str, Any]:
    bucket, prefix = names.parse_s3_uri(output_uri)
    key = f"{prefix}/{EVALUATION_FILE}"
    try:
        response = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if not aws_errors.missing(exc):
            raise  # throttled, an outage, a denial during a stack update: the event (or the reconciler) tries again
        raise EvaluationOutputError(f"s3://{bucket}/{key} cannot be read: {aws_errors.text(exc)}") from exc
    size = response.get("ContentLength")
    if isinstance(size, int) and size > MAX_EVALUATION_BYTES:
        response["Body"].close()
        raise EvaluationOutputError(
            f"s3://{bucket}/{key} is {size:,} bytes, more than the {MAX_EVALUATION_BYTES:,} an evaluation.json may be"
        )
    raw = response["Body"].read(MAX_EVALUATION_BYTES + 1)
    if len(raw) > MAX_EVALUATION_BYTES:
        raise EvaluationOutputError(f"s3://{bucket}/{key} is more than the {MAX_EVALUATION_BYTES:,} bytes an evaluation.json may be")
    try:
        evaluation = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise EvaluationOutputError(f"s3://{bucket}/{key} is not valid JSON: {type(exc).__name__}: {exc}") from exc
    return check_evaluation(evaluation, f"s3://{bucket}/{key}")


def record_results(
    job_name: str, status: str, detail: dict[str, Any], settings: Settings, clients: AwsClients
) -> dict[str, Any]:
    """After the evaluation job of an EVALUATING run ended: record the metrics and end the run (SUCCEEDED, or
    FAILED / STOPPED with the reason). A completion that arrives before the run is EVALUATING raises
    RunNotReadyError, so that the event is delivered again (and the reconciler finds the job ended anyway)."""
    try:
        run_id = names.run_id_of_evaluation_job(job_name)
    except ValueError:  # another processing job whose name has the stack's prefix (the rule matches the prefix only)
        run_id = None
    runs = repository(settings, clients)
    run = runs.get(run_id) if run_id else None
    if run is None:
        logger.warning(
            "no run recorded for this processing job; ignoring", extra={"processing_job_name": job_name}
        )
        return {"status": "IGNORED", "processing_job_name": job_name}
    if states.is_final(run["status"]):
        if withdrawal.left_approved(clients, run):  # an earlier attempt died between its approval and undoing it
            withdrawal.undo_late_approval(runs, clients, run)
        return _recorded_already(runs, settings, clients, run)
    if run["status"] != RunStatus.EVALUATING:
        raise RunNotReadyError(
            f"evaluation job {job_name} ended {status} while run {run_id} is still {run['status']}; "
            "the event is delivered again and the reconciler reads the job's status"
        )

    if status in ("Completed", "Stopped") and stop_requests.requested(run):  # stopped, or past its deadline: nothing
        final, reason = stop_requests.outcome(run)  # recorded
        return end_run(runs, settings, clients, run_id, stage="evaluation", status=final, reason=reason)
    if status != "Completed":
        final = RunStatus.STOPPED if status == "Stopped" else RunStatus.FAILED
        reason = _failure_reason(detail) or f"the evaluation job ended {status}"
        return end_run(runs, settings, clients, run_id, stage="evaluation", status=final, reason=reason)

    output_uri = _output_uri(detail, settings, run_id)
    try:
        evaluation = read_evaluation(clients.s3, output_uri)
    except EvaluationOutputError as exc:
        return end_run(
            runs, settings, clients, run_id, stage="evaluation", status=RunStatus.FAILED, reason=str(exc)
        )
    results = {
        "evaluation_uri": f"{output_uri}/{EVALUATION_FILE}",
        "test_accuracy": evaluation["metrics"]["accuracy"]["value"],
        "report_uri": names.s3_uri(names.parse_s3_uri(output_uri)[0], names.report_key(run_id)),
    }
    evaluation_cost = costs.evaluation_cost(detail)  # the trials' is the tuning step's (tuning.cost)
    if evaluation_cost is not None:
        results["evaluation_cost"] = evaluation_cost
    # the evaluation job draws no confusion matrix when matplotlib is missing
    if s3_presence.exists(clients.s3, *names.parse_s3_uri(f"{output_uri}/{CONFUSION_MATRIX_FILE}")):
        results["confusion_matrix_uri"] = f"{output_uri}/{CONFUSION_MATRIX_FILE}"
    fields = {"metrics": evaluation["metrics"], "results": results}
    run = {**run, JOB_ENDED_AT: job_ended_at(detail)}  # a moment's refusal of the registry is retried from then
    try:
        ended_meanwhile = _record_with_champion(runs, run, fields, evaluation, settings, clients)
    except ClientError as exc:
        if not aws_errors.refused_value(exc):
            raise
        # a value the checks above let through that DynamoDB will never store: tried again, it fails again until the
        # run's deadline, so the run fails now with DynamoDB's words (and any approval given is withdrawn); a run
        # stopped or ended meanwhile ends as that says (DynamoDB refused the values before it read the conditions)
        item = runs.get(run_id)
        if item is None or item.get("status") != RunStatus.EVALUATING or stop_requests.requested(item):
            return _ended_meanwhile(runs, settings, clients, run_id, withdraw=True)
        return end_run(runs, settings, clients, run_id, stage="evaluation", status=RunStatus.FAILED,
                       reason=f"{results['evaluation_uri']}: the run record refused its results "
                              f"({aws_errors.text(exc)})", only_from=(RunStatus.EVALUATING,))
    if ended_meanwhile is not None:
        return ended_meanwhile
    logger.info("run succeeded", extra={"run_id": run_id, "test_accuracy": results["test_accuracy"]})
    report_annotation.annotate(runs, clients.report_s3, run_id)  # told in the report before the message links to it
    conclude(runs, settings, clients, run_id)
    return {"run_id": run_id, "status": RunStatus.SUCCEEDED.value, "test_accuracy": results["test_accuracy"]}


def _record_with_champion(
    runs: RunsRepository,
    run: dict[str, Any],
    fields: dict[str, Any],
    evaluation: dict[str, Any],
    settings: Settings,
    clients: AwsClients,
) -> dict[str, Any] | None:
    """Register the model, decide the champion and write the run's SUCCEEDED (None). When the run becomes champion
    the pointer moves in the same transaction as that write, so a run ended meanwhile never becomes champion and
    no run is champion without having succeeded; a pointer changed meanwhile is read again and decided again.
    A run ended meanwhile: what ``already_final`` says of it."""
    run_id = run["run_id"]
    dataset = run.get("dataset") or run_id
    view = {**run, **fields}
    entry = register(view, fields["results"], settings, clients)
    arn = entry.get("model_package_arn")
    if "outbox" not in run or "status_history" not in run:
        runs.add_maps(run_id)  # an item written before these maps existed (a transaction cannot add them on retry)

    marked_here = False  # this attempt marked the package for approval (then tried it) in an earlier decision

    def succeed(champion: dict[str, Any], plan: Plan | None) -> dict[str, Any] | None:
        nonlocal entry, marked_here
        approving = bool(arn) and champion.get("champion_run_id") == run_id
        # the package is kept on the run before its approval, so that whatever ends the run instead withdraws it
        # (withdrawal.py)
        marked = {"model_package_arn": arn, "package_marked_at": now_iso()}
        if approving and runs.update_if(run_id, RunStatus.EVALUATING, unless_stop_requested=True, **marked) is None:
            return _ended_meanwhile(runs, settings, clients, run_id)
        # the package may be Approved already, whatever the registry entry says: by an attempt that died before its
        # transaction (the mark on the run says so), or by this one before the champion changed, even where the
        # approval's answer was lost (its error recorded, the package Approved all the same); a run that is not
        # champion then puts it back to pending, with the same retries as an approval
        approved_before = (marked_here or bool(run.get("package_marked_at"))
                           or entry.get("approval") == registry.APPROVED)
        marked_here = marked_here or approving
        if approved_before and not approving:
            entry = {**entry, "approval": None}
        # a champion's package approval refused for a moment fails this attempt, which is tried again (the event,
        # the reconciler), as registering it does; past that window the run succeeds with the error recorded
        entry = set_approval(entry, champion, run_id, clients,
                             raise_transient=(approving or approved_before) and retrying(run))
        final = {**fields, "registry": entry, "champion": champion, **({"model_package_arn": arn} if arn else {})}
        notice = messages.succeeded({**run, **final}, evaluation, settings.runs_table)
        if plan is None or not plan.moves:
            moved = runs.transition(run_id, RunStatus.EVALUATING, RunStatus.SUCCEEDED, notice=notice,
                                    unless_stop_requested=True, **final)
            return None if moved is not None else _ended_meanwhile(runs, settings, clients, run_id)
        set_champion(
            clients.runs_table,
            dataset,
            run_id=run_id,
            accuracy=fields["results"]["test_accuracy"],
            test_rows=test_rows(run),
            test_split=champion["test_split"],
            why=plan.reason,
            expected_run_id=plan.expected_run_id,
            expect_rejected=plan.replaces_rejected,
            model_package_arn=arn,
            run_update=runs.transition_request(
                run_id, RunStatus.EVALUATING, RunStatus.SUCCEEDED, notice=notice, unless_stop_requested=True, **final
            ),
        )
        if plan.expected_run_id is not None and entry.get("approval") == registry.APPROVED:
            # the champion replaced goes back to pending; when this run's own approval failed (recorded, and told in
            # its message), the reconciler's passes approve it first, and only then put the one before back
            former_champions.settle_quietly(runs, clients.sagemaker, dataset)
        return None

    champion: dict[str, Any] = {}
    for _ in range(TRIES):
        champion, plan = plan_champion(view, fields["results"], settings, clients, evaluation.get("comparison"), arn,
                                       not_measured=_champion_not_measured(evaluation))
        try:
            return succeed(champion, plan)
        except ChampionChanged:
            continue  # read again, decide again
        except RunMovedOn:  # ended meanwhile (its deadline), or recorded meanwhile by another record_results
            # ended: end_run withdrew the approval too, but maybe before it was given here (and the reconciler settles
            # it again while the run is in the pending index): withdrawn again, with the reason the run ended
            return _ended_meanwhile(runs, settings, clients, run_id, withdraw=True)
        except ClientError as exc:
            if aws_errors.transient(exc):
                raise  # nothing was written: the event or the reconciler records the results again
            return succeed(not_decided(champion, exc, run_id), None)  # refused (AccessDenied...): the run still succeeds
    return succeed(not_decided(champion, ChampionChanged(f"the champion of {dataset!r} kept changing"), run_id), None)


def _ended_meanwhile(
    runs: RunsRepository, settings: Settings, clients: AwsClients, run_id: str, *, withdraw: bool = False
) -> dict[str, Any]:
    item = runs.get(run_id)
    if item and item.get("status") == RunStatus.EVALUATING and stop_requests.requested(item):
        # a person stopped the run while its results were being recorded (or it passed its deadline): it ends STOPPED
        # (FAILED), never champion (end_run withdraws an approval given here)
        final, reason = stop_requests.outcome(item)
        return end_run(runs, settings, clients, run_id, stage="evaluation", status=final, reason=reason,
                       only_from=(RunStatus.EVALUATING,))
    # a run that moved on to SUCCEEDED (another record_results, the event's or a pass's, recorded it) keeps an
    # approval only if that made it champion; else the approval given here came after that one put it back to pending
    if withdraw and item and item.get("model_package_arn"):
        withdrawal.undo_late_approval(runs, clients, item)
    if not item:
        return {"status": "IGNORED", "run_id": run_id}
    return _recorded_already(runs, settings, clients, item)


def _recorded_already(
    runs: RunsRepository, settings: Settings, clients: AwsClients, item: dict[str, Any]
) -> dict[str, Any]:
    """A run that ended before this attempt could record it: ``already_final``, after telling its champion decision
    in its report, which the attempt that recorded it may have died before doing."""
    report_annotation.annotate(runs, clients.report_s3, item["run_id"])
    return already_final(runs, settings, clients, item)
