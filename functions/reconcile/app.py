"""EventBridge Scheduler, every few minutes -> one reconciler pass over the runs that have not ended."""

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from reviewtune.core.context import TRACED_MODULES, FunctionContext
from reviewtune.core.reconciler import reconcile

logger = Logger()
tracer = Tracer(patch_modules=TRACED_MODULES)
metrics = Metrics()
ctx = FunctionContext.from_env()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context) -> dict:
    counted: dict[str, int] = {}

    def publish(done: dict) -> None:  # before the restarts, which may end the invocation: flushed at once
        counted["errors"] = len(done["errors"])
        add_counts(done)
        metrics.flush_metrics()

    result = reconcile(ctx.settings, ctx.clients, seconds_left=lambda: context.get_remaining_time_in_millis() / 1000,
                       before_restarts=publish)
    if counted:  # the restarts' own errors
        metrics.add_metric(name="ReconcileErrors", unit=MetricUnit.Count,
                           value=max(0, len(result["errors"]) - counted["errors"]))
    else:
        add_counts(result)
    return result


def add_counts(result: dict) -> None:
    """A pass's counts as metrics (its summary, ``reconciler.Pass.summary``)."""
    metrics.add_metric(name="StuckRuns", unit=MetricUnit.Count, value=result["stuck"])
    metrics.add_metric(name="NoticesSent", unit=MetricUnit.Count, value=result["sent"])
    # messages SNS still refuses a quarter of an hour after their run's transition recorded them
    metrics.add_metric(name="LateMessages", unit=MetricUnit.Count, value=result["late_messages"])
    metrics.add_metric(name="QueuedRunsStarted", unit=MetricUnit.Count, value=result["started"])
    metrics.add_metric(name="ReconcileErrors", unit=MetricUnit.Count, value=len(result["errors"]))
    # dropped files whose Object Created event never came: the reconciler's listing of incoming/ claimed their runs
    metrics.add_metric(name="MissedDrops", unit=MetricUnit.Count, value=result["missed_drops"]["claimed"])
    taken = result["dead_letters"]
    metrics.add_metric(name="DeadLettersTakenBack", unit=MetricUnit.Count, value=taken["claimed"] + taken["existing"])
