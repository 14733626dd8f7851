"""EventBridge Scheduler, locally: each schedule of a function puts an event into that function's inbox queue.

The router then delivers it like any other event (retries, dead-letter queue). The period comes from the
template's ScheduleExpression (``rate(5 minutes)``), or from ``period_s`` when given (the local runtime runs the
reconciler more often than the cloud does). ``cron(...)`` and ``at(...)`` expressions need ``period_s``.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from reviewtune.local.stack import FunctionSpec

logger = logging.getLogger(__name__)

_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


def rate_seconds(expression: str) -> float:
    """The period of a ``rate(N unit)`` expression, in seconds."""
    match = _RATE.match(expression.strip())
    if not match:
        raise ValueError(f"only rate(...) schedules have a period: {expression!r}")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2).rstrip("s")]


def scheduled_event(spec: FunctionSpec, expression: str) -> dict[str, Any]:
    """What the schedule delivers (a Scheduler schedule without Input sends no detail the reconciler reads)."""
    return {
        "source": "aws.scheduler",
        "detail-type": "Scheduled Event",
        "time": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "resources": [spec.function_arn],
        "detail": {"schedule": expression},
    }


class LocalScheduler:
    """One timer thread per schedule; ``stop()`` ends them."""

    def __init__(self, functions: Sequence[FunctionSpec], *, sqs_client: Any, period_s: float | None = None):
        self._jobs = [
            (spec, expression, period_s or rate_seconds(expression))
            for spec in functions
            for expression in spec.schedules
        ]
        self._sqs = sqs_client
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def periods(self) -> dict[str, float]:
        """Period in seconds by function logical id."""
        return {spec.logical_id: period for spec, _, period in self._jobs}

    def start(self) -> LocalScheduler:
        self._stop.clear()
        for spec, expression, period in self._jobs:
            thread = threading.Thread(
                target=self._run, args=(spec, expression, period), name=f"schedule-{spec.logical_id}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        threads, self._threads = self._threads, []
        for thread in threads:
            thread.join(timeout)

    def fire(self, spec: FunctionSpec, expression: str) -> None:
        self._sqs.send_message(QueueUrl=spec.inbox_queue_url, MessageBody=json.dumps(scheduled_event(spec, expression)))

    def _run(self, spec: FunctionSpec, expression: str, period: float) -> None:
        while not self._stop.wait(period):
            try:
                self.fire(spec, expression)
            except Exception as error:  # noqa: BLE001 - the server may be going away; try at the next tick
                if not self._stop.is_set():
                    logger.warning("schedule of %s did not fire: %s", spec.logical_id, error)
