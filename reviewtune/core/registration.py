"""After a run's evaluation: register its best model in the Model Registry and decide whether it is champion.

Called by record_results before the run's final transition, so the success message can say what happened.
Each step is idempotent (a retried record_results gets the same model package through the ClientToken, and a
run that is champion already stays so), and no failure here costs the run its outcome: a refused registration
(AccessDenied, a bad artifact URI, ...) or an unreachable champion item is recorded in the run item
(``registry.error`` / ``champion.error``) and named in the message, and the run still SUCCEEDS. Nothing retries
it on its own: the model artifact and evaluation.json stay in S3 and a person can register the model by hand.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from reviewtune.core import aws_errors, names, registry
from reviewtune.core.champion import ALREADY, ChampionChanged, Comparison, challenge
from reviewtune.core.clients import AwsClients
from reviewtune.core.config import Settings
from reviewtune.core.reasons import bounded
from reviewtune.core.runs import RunStatus

logger = Logger(child=True)

NOT_DECIDED = "not decided"


def _error_text(exc: Exception) -> str:
    return bounded(aws_errors.describe(exc))


def split_identity(run: dict[str, Any], bucket: str) -> str:
    """What identifies the test split a run was measured on: the SHA-256 of its test TSV (two runs of the same
    file get the same split), or, for a run recorded without it, its own test object (comparable to nothing)."""
    digest = ((run.get("data") or {}).get("sha256") or {}).get("test")
    return f"sha256:{digest}" if digest else names.s3_uri(bucket, names.split_key(run["run_id"], "test"))


def register(run: dict[str, Any], results: dict[str, Any], settings: Settings, clients: AwsClients) -> dict[str, Any]:
    """Register the run's best model (PendingManualApproval); the ``registry`` part of the run item."""
    dataset = run.get("dataset") or run["run_id"]
    group = registry.package_group_name(dataset, prefix=settings.job_name_prefix)
    out: dict[str, Any] = {"group": group}
    try:
        model_uri = run["tuning"]["best_training_job"]["model_uri"]
        registry.ensure_group(clients.sagemaker, group, f"reviewtune models of {dataset}")
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
        out["error"] = _error_text(exc)
        logger.warning("model registration failed", extra={"run_id": run["run_id"], "error": out["error"]})
    return out


def decide_champion(
    run: dict[str, Any],
    results: dict[str, Any],
    model_package_arn: str | None,
    settings: Settings,
    clients: AwsClients,
    comparison: Any = None,
) -> dict[str, Any]:
    """Make the run champion of its dataset if it is the first, or if ``comparison`` (evaluation.json's: both
    models on the same test reviews) shows it better than the champion by the margin. The run item's ``champion``."""
    dataset = run.get("dataset") or run["run_id"]
    split = split_identity(run, settings.bucket)
    rows = ((run.get("data") or {}).get("summary") or {}).get("rows", {}).get("test") or 0
    out: dict[str, Any] = {"test_split": split}
    try:
        compared = Comparison.from_evaluation(comparison) if comparison is not None else None
        if compared is not None:
            out["comparison"] = compared.as_dict()
        outcome = challenge(
            clients.runs_table,
            dataset,
            run_id=run["run_id"],
            accuracy=results["test_accuracy"],
            test_rows=int(rows),
            test_split=split,
            comparison=compared,
            margin_points=settings.champion_margin_points,
            model_package_arn=model_package_arn,
            not_measured=(run.get("challenge") or {}).get("reason") if compared is None else None,
            while_status=RunStatus.EVALUATING.value,  # a run ended meanwhile never becomes champion (RunMovedOn)
        )
    except (ClientError, BotoCoreError, ChampionChanged, ValueError) as exc:
        error = _error_text(exc)
        logger.warning("champion decision failed", extra={"run_id": run["run_id"], "error": error})
        return {**out, "decision": NOT_DECIDED, "error": error}
    if outcome.label != ALREADY:
        out["margin_points"] = settings.champion_margin_points
    return {**out, "decision": outcome.label, "reason": outcome.reason, "champion_run_id": outcome.champion_run_id}


def register_and_decide(
    run: dict[str, Any],
    results: dict[str, Any],
    settings: Settings,
    clients: AwsClients,
    comparison: Any = None,
) -> dict[str, Any]:
    """Registry and champion for one evaluated run: the run item's ``registry``, ``champion`` and
    ``model_package_arn`` fields. ``comparison``: evaluation.json's comparison with the champion, if any.
    Never raises for an AWS refusal (see the module's docstring)."""
    entry = register(run, results, settings, clients)
    arn = entry.get("model_package_arn")
    champion = decide_champion(run, results, arn, settings, clients, comparison)
    if arn and champion.get("champion_run_id") == run["run_id"]:
        try:
            registry.set_approval(clients.sagemaker, arn, registry.APPROVED, f"champion: {champion['reason']}")
            entry["approval"] = registry.APPROVED
        except (ClientError, BotoCoreError) as exc:
            entry["error"] = f"approval failed: {_error_text(exc)}"
    fields: dict[str, Any] = {"registry": entry, "champion": champion}
    if arn:
        fields["model_package_arn"] = arn
    return fields
