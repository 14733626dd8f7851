"""SageMaker tuning job state change -> record the trials, evaluate the best model on the test split."""

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.idempotency import idempotent

from reviewtune.core.context import TRACED_MODULES, FunctionContext, idempotency_config
from reviewtune.core.evaluation import start_evaluation
from reviewtune.core.events import tuning_job_state_change

logger = Logger()
tracer = Tracer(patch_modules=TRACED_MODULES)
metrics = Metrics()
ctx = FunctionContext.from_env()
IDEMPOTENCY = idempotency_config("[detail.HyperParameterTuningJobName, detail.HyperParameterTuningJobStatus]")


@logger.inject_lambda_context(log_event=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
@idempotent(persistence_store=ctx.persistence, config=IDEMPOTENCY)
def handler(event: dict, context) -> dict:
    change = tuning_job_state_change(event)
    result = start_evaluation(change.name, change.status, ctx.settings, ctx.clients)
    metrics.add_metric(name=f"Tuning{change.status}", unit=MetricUnit.Count, value=1)
    return result
