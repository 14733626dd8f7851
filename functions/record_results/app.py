"""SageMaker processing job state change -> evaluation.json into DynamoDB, a message to SNS."""

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.idempotency import idempotent

from reviewtune.core.context import TRACED_MODULES, FunctionContext, idempotency_config
from reviewtune.core.events import processing_job_state_change
from reviewtune.core.results import record_results

logger = Logger()
tracer = Tracer(patch_modules=TRACED_MODULES)
metrics = Metrics()
ctx = FunctionContext.from_env()
IDEMPOTENCY = idempotency_config("[detail.ProcessingJobName, detail.ProcessingJobStatus]")


@logger.inject_lambda_context(log_event=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
@idempotent(persistence_store=ctx.persistence, config=IDEMPOTENCY)
def handler(event: dict, context) -> dict:
    change = processing_job_state_change(event)
    result = record_results(change.name, change.status, dict(change.detail), ctx.settings, ctx.clients)
    if "test_accuracy" in result:
        metrics.add_metric(name="TestAccuracy", unit=MetricUnit.Percent, value=result["test_accuracy"] * 100)
    metrics.add_metric(name=f"Runs{result['status'].title()}", unit=MetricUnit.Count, value=1)
    return result
