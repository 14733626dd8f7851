"""record_results: store the evaluation of the best model and tell people how the run went."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from reviewtune.core import messages, names
from reviewtune.core.clients import AwsClients
from reviewtune.core.config import Settings
from reviewtune.core.errors import EvaluationOutputError
from reviewtune.core.evaluation import EVALUATION_OUTPUT
from reviewtune.core.failures import end_run
from reviewtune.core.notify import publish
from reviewtune.core.runs import RunsRepository, RunStatus

logger = Logger(child=True)

EVALUATION_FILE = "evaluation.json"
CONFUSION_MATRIX_FILE = "confusion_matrix.png"


def _output_uri(detail: dict[str, Any], settings: Settings, run_id: str) -> str:
    for output in (detail.get("ProcessingOutputConfig") or {}).get("Outputs", []):
        if output.get("OutputName") == EVALUATION_OUTPUT:
            return output["S3Output"]["S3Uri"].rstrip("/")
    return names.s3_uri(settings.bucket, names.evaluation_prefix(run_id).rstrip("/"))


def read_evaluation(s3: Any, output_uri: str) -> dict[str, Any]:
    bucket, prefix = names.parse_s3_uri(output_uri)
    key = f"{prefix}/{EVALUATION_FILE}"
    try:
        raw = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        raise EvaluationOutputError(
            f"s3://{bucket}/{key} cannot be read: {exc.response['Error']['Code']}"
        ) from exc
    try:
        evaluation = json.loads(raw)
        accuracy = float(evaluation["metrics"]["accuracy"]["value"])
    except (ValueError, KeyError, TypeError) as exc:
        raise EvaluationOutputError(f"s3://{bucket}/{key} has no metrics.accuracy.value: {exc!r}") from exc
    if not 0.0 <= accuracy <= 1.0:
        raise EvaluationOutputError(f"s3://{bucket}/{key}: accuracy {accuracy} is not between 0 and 1")
    return evaluation


def record_results(
    job_name: str, status: str, detail: dict[str, Any], settings: Settings, clients: AwsClients
) -> dict[str, Any]:
    run_id = names.run_id_of_evaluation_job(job_name)
    runs = RunsRepository(clients.runs_table)
    run = runs.get(run_id)
    if run is None:
        logger.warning(
            "no run recorded for this processing job; ignoring", extra={"processing_job_name": job_name}
        )
        return {"status": "IGNORED", "processing_job_name": job_name}
    if run["status"] != RunStatus.EVALUATING:
        logger.info("duplicate event: run moved on", extra={"run_id": run_id, "status": run["status"]})
        return {"run_id": run_id, "status": run["status"], "duplicate": True}

    if status != "Completed":
        final = RunStatus.STOPPED if status == "Stopped" else RunStatus.FAILED
        reason = (
            detail.get("FailureReason") or detail.get("ExitMessage") or f"the evaluation job ended {status}"
        )
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
        "confusion_matrix_uri": f"{output_uri}/{CONFUSION_MATRIX_FILE}",
        "test_accuracy": evaluation["metrics"]["accuracy"]["value"],
        "report_uri": names.s3_uri(names.parse_s3_uri(output_uri)[0], names.report_key(run_id)),
    }
    item = runs.update(
        run_id, status=RunStatus.SUCCEEDED.value, metrics=evaluation["metrics"], results=results
    )
    subject, body = messages.succeeded(item, evaluation, settings.runs_table)
    message_id = publish(
        clients.sns, settings.topic_arn, subject, body, run_id=run_id, status=RunStatus.SUCCEEDED.value
    )
    runs.update(run_id, notification_message_id=message_id)
    logger.info("run succeeded", extra={"run_id": run_id, "test_accuracy": results["test_accuracy"]})
    return {"run_id": run_id, "status": RunStatus.SUCCEEDED.value, "test_accuracy": results["test_accuracy"]}
