"""Publish SageMaker's state-change events to the default EventBridge bus.

Details follow AWS's documented shapes: the training and processing job details mirror their Describe
responses with times as epoch milliseconds; the tuning job detail carries its configuration and counters,
times as epoch-millisecond strings, and no ``BestTrainingJob`` (consumers call DescribeHyperParameterTuningJob).
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

logger = logging.getLogger(__name__)

SOURCE = "aws.sagemaker"
TRAINING_JOB_STATE_CHANGE = "SageMaker Training Job State Change"
TUNING_JOB_STATE_CHANGE = "SageMaker HyperParameter Tuning Job State Change"
PROCESSING_JOB_STATE_CHANGE = "SageMaker Processing Job State Change"

TIME_KEYS = frozenset(
    {
        "CreationTime",
        "LastModifiedTime",
        "TrainingStartTime",
        "TrainingEndTime",
        "ProcessingStartTime",
        "ProcessingEndTime",
        "HyperParameterTuningEndTime",
        "ConvergenceDetectedTime",
        "StartTime",
        "EndTime",
        "Timestamp",
    }
)


def times_to_epoch_ms(value: Any, *, as_string: bool = False) -> Any:
    """Copy ``value`` with every timestamp (epoch seconds under a TIME_KEYS key) in epoch milliseconds."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key in TIME_KEYS and isinstance(item, (int, float)) and not isinstance(item, bool):
                millis = int(round(item * 1000))
                out[key] = str(millis) if as_string else millis
            else:
                out[key] = times_to_epoch_ms(item, as_string=as_string)
        return out
    if isinstance(value, list):
        return [times_to_epoch_ms(item, as_string=as_string) for item in value]
    return value


class EventPublisher:
    """Sends events with ``put_events``; a failure is logged, never raised into a job."""

    def __init__(self, events_client: Any) -> None:
        self._client = events_client
        self._enabled = True
        self._lock = threading.Lock()

    def close(self) -> None:
        """Stop publishing (the service is shutting down and the bus may be gone)."""
        self._enabled = False

    def publish(self, detail_type: str, resource_arn: str, detail: dict[str, Any]) -> None:
        if not self._enabled:
            return
        entry = {
            "Source": SOURCE,
            "DetailType": detail_type,
            "Detail": json.dumps(detail),
            "Resources": [resource_arn],
        }
        try:
            with self._lock:  # keeps one job's events in the order they happened
                response = self._client.put_events(Entries=[entry])
            if response.get("FailedEntryCount"):
                logger.warning("EventBridge rejected %s for %s: %s", detail_type, resource_arn, response)
        except Exception:
            logger.exception("could not publish %s for %s", detail_type, resource_arn)
