"""Ending a run that failed or was stopped: record why, tell people, answer the handler."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from reviewtune.core import messages
from reviewtune.core.clients import AwsClients
from reviewtune.core.config import Settings
from reviewtune.core.notify import publish
from reviewtune.core.runs import RunsRepository, RunStatus

logger = Logger(child=True)


def end_run(
    runs: RunsRepository,
    settings: Settings,
    clients: AwsClients,
    run_id: str,
    *,
    stage: str,
    status: RunStatus,
    reason: str,
    **fields: Any,
) -> dict[str, Any]:
    """Set the run's final status and failure reason (plus ``fields``), publish the failure message."""
    item = runs.update(run_id, status=status.value, failure_reason=reason, **fields)
    subject, body = messages.run_failed(item, stage, status.value, reason, settings.runs_table)
    publish(clients.sns, settings.topic_arn, subject, body, run_id=run_id, status=status.value)
    logger.warning(
        "run ended", extra={"run_id": run_id, "stage": stage, "status": status.value, "reason": reason}
    )
    return {"run_id": run_id, "status": status.value, "reason": reason}
