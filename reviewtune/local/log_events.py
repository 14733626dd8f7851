"""Writing lines to CloudWatch Logs within PutLogEvents' limits, for the local runtime's jobs and functions (the
local SageMaker's ``cloudwatch_logs.py``, the router's ``function_logs.py``): the group and stream made when missing,
each line cut to an event's largest size, the batches cut to a call's."""

from __future__ import annotations

from contextlib import suppress
from typing import Any

from botocore.config import Config

# Writing a log line never holds up a job or a delivery for long: a CloudWatch Logs endpoint that is gone (the
# runtime stopping) fails within seconds, not botocore's default minute per attempt.
CLIENT_CONFIG = Config(connect_timeout=2, read_timeout=10, retries={"max_attempts": 2, "mode": "standard"})

# PutLogEvents: at most 10,000 events and 1,048,576 bytes a batch, each event's size its UTF-8 bytes plus 26.
MAX_BATCH_EVENTS = 10_000
MAX_BATCH_BYTES = 1_048_576
EVENT_OVERHEAD_BYTES = 26
MAX_EVENT_BYTES = 256 * 1024 - EVENT_OVERHEAD_BYTES


def event(timestamp_ms: int, line: str) -> dict[str, Any]:
    """One log event: the line cut to the largest event (on a character boundary); an empty one as a space, which
    CloudWatch takes where it refuses an empty message."""
    encoded = line.encode("utf-8", "replace")
    if len(encoded) > MAX_EVENT_BYTES:
        line = encoded[:MAX_EVENT_BYTES].decode("utf-8", "ignore")
    return {"timestamp": timestamp_ms, "message": line or " "}


def ensure_stream(client: Any, group: str, stream: str) -> None:
    for call, arguments in ((client.create_log_group, {"logGroupName": group}),
                            (client.create_log_stream, {"logGroupName": group, "logStreamName": stream})):
        with suppress(client.exceptions.ResourceAlreadyExistsException):
            call(**arguments)


def batches(events: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """``events`` (in time order) in batches PutLogEvents takes."""
    result: list[list[dict[str, Any]]] = []
    batch: list[dict[str, Any]] = []
    size = 0
    for item in events:
        item_size = len(item["message"].encode("utf-8", "replace")) + EVENT_OVERHEAD_BYTES
        if batch and (len(batch) >= MAX_BATCH_EVENTS or size + item_size > MAX_BATCH_BYTES):
            result.append(batch)
            batch, size = [], 0
        batch.append(item)
        size += item_size
    if batch:
        result.append(batch)
    return result
