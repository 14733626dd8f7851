"""S3 "Object Created" (EventBridge) -> validate and split the file, start a SageMaker tuning job."""

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.idempotency import idempotent

from reviewtune.core.context import TRACED_MODULES, FunctionContext, idempotency_config
from reviewtune.core.events import object_created
from reviewtune.core.objects import locate_dropped_object, with_event
from reviewtune.core.tuning import other_bucket, run_exists, start_tuning

logger = Logger()
tracer = Tracer(patch_modules=TRACED_MODULES)
metrics = Metrics()
ctx = FunctionContext.from_env()
IDEMPOTENCY = idempotency_config(
    '[detail.bucket.name, detail.object.key, detail.object."version-id", detail.object.etag || detail.object.eTag,'
    ' detail.object.sequencer]'
)


@logger.inject_lambda_context(log_event=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
@idempotent(persistence_store=ctx.persistence, config=IDEMPOTENCY)
def handler(event: dict, context) -> dict:
    detail = object_created(event)
    if (ignored := other_bucket(detail.bucket, detail.object.key, ctx.settings)) is not None:
        return ignored
    obj = locate_dropped_object(
        ctx.clients.s3,
        detail.bucket,
        detail.object.key,
        detail.object.version_id,
        detail.object.etag,
        detail.object.size,
        run_exists(ctx.settings, ctx.clients),
    )
    result = start_tuning(with_event(obj, detail.object), ctx.settings, ctx.clients)
    metrics.add_metric(name=f"Runs{result['status'].title()}", unit=MetricUnit.Count, value=1)
    return result
