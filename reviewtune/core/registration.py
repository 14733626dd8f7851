"""After a run's evaluation: register its best model in the Model Registry and decide whether it is champion.

Called by record_results before the run's final transition, so the success message can say what happened; nothing
here moves the champion pointer (record_results moves it in the same transaction as the run's SUCCEEDED; here at most
a stale note of a rejected package is taken off it, ``former_champions.still_rejected``).
Each step is idempotent (a retried record_results gets the same model package through the ClientToken, and a
run that is champion already stays so), and no failure here costs the run its outcome: a refused registration
(AccessDenied, a bad artifact URI, ...) or an unreachable champion item is recorded in the run item
(``registry.error`` / ``champion.error``) and named in the message, and the run still SUCCEEDS. A registration
that failed for a moment, or the approval of a new champion's package, is tried again for REGISTRATION_RETRY_SECONDS
(record_results raises, nothing final written); then the error is recorded too: the model artifact and evaluation.json
stay in S3 and a person can register or approve it by hand.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from reviewtune.core import aws_errors, former_champions, names, registry
from reviewtune.core.champion import ALREADY, GUESSING, KEPT, NOT_COMPARED, Comparison, Plan, plan_challenge
from reviewtune.core.clients import AwsClients
from reviewtune.core.config import Settings
from reviewtune.core.events import sagemaker_time
from reviewtune.core.guessing import most_common_class
from reviewtune.core.reasons import bounded
from reviewtune.core.runs import RunsRepository, now_iso, parse_iso

logger = Logger(child=True)

NOT_DECIDED = "not decided"
# A registration that failed for a moment (throttling, a server error, no answer) makes record_results fail, to be
# tried again by the event's redelivery and the reconciler, for this long after the evaluation job ended (after the
# run entered EVALUATING when the job's end is not known), and never within DEADLINE_MARGIN_SECONDS of the run's
# deadline (3 h in EVALUATING by default), so that an attempt still records the run before the deadline would end it;
# after that the run succeeds with the error recorded, and the model can be registered by hand.
REGISTRATION_RETRY_SECONDS = 3600
DEADLINE_MARGIN_SECONDS = 1800
# The run item's field naming the model package group its model is registered in (group_for).
REGISTRY_GROUP = "registry_group"
# The key of record_results' view of the run that holds when its evaluation job ended (never written to the item).
JOB_ENDED_AT = "evaluation_job_ended_at"


def _error_text(exc: Exception) -> str:
    return bounded(aws_errors.describe(exc))


def test_rows(run: dict[str, Any]) -> int:
    """How many test reviews the run's split holds (0 when not recorded)."""
    return int(((run.get("data") or {}).get("summary") or {}).get("rows", {}).get("test") or 0)


def split_identity(run: dict[str, Any], bucket: str) -> str:
    """What identifies the test split a run was measured on: the SHA-256 of its test TSV (two runs of the same
    file get the same split), or, for a run recorded without it, its own test object (comparable to nothing)."""
    digest = ((run.get("data") or {}).get("sha256") or {}).get("test")
    return f"sha256:{digest}" if digest else names.s3_uri(bucket, names.split_key(run["run_id"], "test"))


def group_for(run: dict[str, Any], champion_run: dict[str, Any] | None, settings: Settings) -> str:
    """The model package group a run is to register its model in, chosen when its evaluation starts and kept on the
    run (``REGISTRY_GROUP``): the group of the dataset's champion's package (``champion_run``, the champion's run
    item, None without a champion), so that a dataset goes on in the group its champion is in, whatever the group's
    name, as long as it is a group of the stack's JobNamePrefix (the functions may register only there); else the
    stack's own group of the dataset, its name scoped by the data bucket (``registry.package_group_name``)."""
    recorded = (champion_run or {}).get("registry") or {}
    group = recorded.get("group")
    if group and recorded.get("model_package_arn") and group.lower().startswith(f"{settings.job_name_prefix}-".lower()):
        return group
    return registry.package_group_name(_dataset(run), settings.job_name_prefix, scope=settings.bucket)


def registered_group(run: dict[str, Any], settings: Settings) -> str:
    """The group ``register`` uses: the one recorded on the run when its evaluation started (``group_for``); for a
    run whose evaluation started before runs recorded it, the dataset's group named by the dataset alone, where its
    champion then was."""
    return run.get(REGISTRY_GROUP) or registry.package_group_name(_dataset(run), prefix=settings.job_name_prefix)


def _dataset(run: dict[str, Any]) -> str:
    """The dataset a run's models are registered for (a run recorded without one: its own id)."""
    return run.get("dataset") or run["run_id"]


def register(run: dict[str, Any], results: dict[str, Any], settings: Settings, clients: AwsClients) -> dict[str, Any]:
    """Register the run's best model (PendingManualApproval); the ``registry`` part of the run item."""
    dataset = _dataset(run)
    group = registered_group(run, settings)
    out: dict[str, Any] = {"group": group}
    try:
        model_uri = run["tuning"]["best_training_job"]["model_uri"]
        registry.ensure_group(clients.sagemaker, group,
                              f"reviewtune models of {dataset} (s3://{settings.bucket}/{names.INCOMING_PREFIX})")
        out["model_package_arn"] = registry.register_model(
            clients.sagemaker,
            group_name=group,
            run_id=run["run_id"],
            image_uri=settings.inference_image_uri,
            model_data_url=model_uri,
            evaluation_uri=results["evaluation_uri"],
            dataset=dataset,
            metadata={"test_accuracy": results["test_accuracy"]},
        )
        out["approval"] = registry.PENDING
    except (ClientError, BotoCoreError, KeyError, TypeError, ValueError) as exc:
        if aws_errors.transient(exc) and retrying(run):
            raise  # nothing of the run is written yet: the event is delivered again, the reconciler retries too
        out["error"] = _error_text(exc)
        logger.warning("model registration failed", extra={"run_id": run["run_id"], "error": out["error"]})
    return out


def retrying(run: dict[str, Any], now: datetime | None = None) -> bool:
    """Whether a moment's refusal of the Model Registry still makes record_results fail and be tried again (for
    REGISTRATION_RETRY_SECONDS after the evaluation job ended, or after the run entered EVALUATING if that is later
    or the end is not known; never within DEADLINE_MARGIN_SECONDS of the run's deadline) rather than record the error
    and succeed."""
    now = now or datetime.now(UTC)
    moments = [parse_iso(value) for value in ((run.get("status_history") or {}).get("EVALUATING"), run.get(JOB_ENDED_AT))
               if value]
    return within_retry_window(run, max(moments) if moments else now, REGISTRATION_RETRY_SECONDS, now)


def within_retry_window(run: dict[str, Any], since: datetime, seconds: float, now: datetime) -> bool:
    """Whether a refusal met ``since`` is still tried again at ``now``: for ``seconds``, and never within
    DEADLINE_MARGIN_SECONDS of the run's deadline (the reconciler ends it then, and the step must not be in the way)."""
    deadline = run.get("deadline_at")
    if deadline and (parse_iso(deadline) - now).total_seconds() < DEADLINE_MARGIN_SECONDS:
        return False
    return (now - since).total_seconds() < seconds


def job_ended_at(detail: dict[str, Any]) -> str | None:
    """When the evaluation job ended (ISO), from its event or its description (``events.sagemaker_time``); None when
    it does not say."""
    ended = sagemaker_time(detail.get("ProcessingEndTime"))
    return now_iso(ended) if ended else None


def plan_champion(
    run: dict[str, Any],
    results: dict[str, Any],
    settings: Settings,
    clients: AwsClients,
    comparison: Any = None,
    model_package_arn: str | None = None,
    not_measured: str | None = None,
) -> tuple[dict[str, Any], Plan | None]:
    """The run item's ``champion`` field and the plan behind it (None when no decision could be made: the reason is
    in the field). The run becomes champion if it is the first, or if ``comparison`` (evaluation.json's: both models
    on the same test reviews) shows it better than the champion by the margin, or, with its own package
    (``model_package_arn``), in place of a champion whose package a person rejected; never when its test accuracy is
    no better than always answering its test split's most common class (the run's ``metrics``: ``guessing``). Nothing is written here but the
    note of that rejection, on the pointer and on the champion's run record: taken off when the package reads
    Approved again (``former_champions.still_rejected``), or put on when a champion about to be kept reads Rejected
    and no pass has noted it yet (``former_champions.found_rejected``)."""
    dataset = run.get("dataset") or run["run_id"]
    out: dict[str, Any] = {"test_split": split_identity(run, settings.bucket)}
    try:
        compared = Comparison.from_evaluation(comparison) if comparison is not None else None
        if compared is not None:
            out["comparison"] = compared.as_dict()

        def plan_now() -> Plan:
            return plan_challenge(
                clients.runs_table,
                dataset,
                run_id=run["run_id"],
                accuracy=results["test_accuracy"],
                test_rows=test_rows(run),
                comparison=compared,
                margin_points=settings.champion_margin_points,
                max_p_value=settings.champion_max_p_value,
                min_compared=settings.champion_min_compared_reviews,
                # why the champion was not measured: the evaluation job's (its model unusable), else start_evaluation's
                # (its files unreadable, so not handed to the job)
                not_measured=(not_measured or (run.get("challenge") or {}).get("reason")) if compared is None else None,
                has_package=bool(model_package_arn),
                most_common=most_common_class(run.get("metrics")) if settings.champion_must_beat_guessing else None,
            )

        plan = plan_now()
        runs = RunsRepository(clients.runs_table)
        if (plan.outcome.label in (KEPT, NOT_COMPARED) and model_package_arn
                and _found_rejected(runs, clients.sagemaker, dataset, run)):
            plan = plan_now()  # rejected since the last pass: noted now, the challenger takes its place
        if plan.replaces_rejected and not former_champions.still_rejected(runs, clients.sagemaker, dataset):
            plan = plan_now()  # approved again since it was noted: the note is off, the champion compared
    except (ClientError, BotoCoreError, ValueError) as exc:
        if aws_errors.transient(exc) and retrying(run):
            raise  # the champion item unreadable for a moment: nothing is written yet, the retry decides
        return not_decided(out, exc, run["run_id"]), None
    outcome = plan.outcome
    if outcome.label not in (ALREADY, GUESSING):  # the margin and the test decided nothing there
        out["margin_points"] = settings.champion_margin_points
        if compared is not None and compared.discordant is not None:  # McNemar's test applied
            out["max_p_value"] = settings.champion_max_p_value
    return {**out, "decision": outcome.label, "reason": outcome.reason, "champion_run_id": outcome.champion_run_id}, plan


def _found_rejected(runs: RunsRepository, sagemaker: Any, dataset: str, run: dict[str, Any]) -> bool:
    """``former_champions.found_rejected``, a look that only hastens what the next pass would find (a package Rejected
    or gone is noted then): a moment's refusal raises while the event is still retried (``retrying``); any other
    refusal (the package not readable, the note not writable), or one on the event's last try, leaves the decision
    as it would have been."""
    try:
        return former_champions.found_rejected(runs, sagemaker, dataset)
    except (ClientError, BotoCoreError) as exc:
        if aws_errors.transient(exc) and retrying(run):
            raise
        logger.warning("the champion's package could not be read or noted Rejected; the next pass looks again",
                       extra={"dataset": dataset, "error": aws_errors.describe(exc)})
        return False


def not_decided(champion: dict[str, Any], exc: Exception, run_id: str) -> dict[str, Any]:
    """The ``champion`` field of a run whose decision failed (it still succeeds; the message names the error)."""
    error = _error_text(exc)
    logger.warning("champion decision failed", extra={"run_id": run_id, "error": error})
    return {
        **{k: v for k, v in champion.items() if k in ("test_split", "comparison")},
        "decision": NOT_DECIDED,
        "error": error,
    }


def set_approval(
    entry: dict[str, Any], champion: dict[str, Any], run_id: str, clients: AwsClients, *, raise_transient: bool = False
) -> dict[str, Any]:
    """The ``registry`` field once the package's approval matches the decision: Approved when the run is (or is
    about to be) champion; a package approved by an earlier decision that changed goes back to pending. Failures
    are recorded (``error``), not raised, but a moment's refusal (throttling) with ``raise_transient``."""
    arn = entry.get("model_package_arn")
    out = registry.without_approval_error(entry)
    if not arn:
        return out
    if champion.get("champion_run_id") == run_id:
        wanted, why = registry.APPROVED, f"{registry.CHAMPION_DESCRIPTION_PREFIX}{champion['reason']}"
    else:
        wanted, why = registry.PENDING, registry.DECISION_CHANGED
    if out.get("approval") == wanted:
        return out
    try:
        registry.set_approval(clients.sagemaker, arn, wanted, why)
        out["approval"] = wanted
    except (ClientError, BotoCoreError) as exc:
        if raise_transient and aws_errors.transient(exc):
            raise
        out["error"] = f"{registry.APPROVAL_FAILED}: {_error_text(exc)}"
    return out
