"""A local invocation's log lines to CloudWatch Logs, where Lambda writes them: group ``/aws/lambda/<function name>``,
lines framed by Lambda's ``START`` / ``END`` / ``REPORT``. Each local invocation runs in a process of its own (a cold
start, as a new execution environment is on Lambda), so each gets a stream of its own,
``YYYY/MM/DD/[$LATEST]<request id without dashes>``. So ``reviewtune runs logs --functions`` reads the local
runtime's functions as it reads a deployed stack's. The lines are also kept in ``logs/<Function>.log``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from reviewtune.core import names
from reviewtune.local import log_events

log_group = names.lambda_log_group


def stream_name(started: datetime, request_id: str) -> str:
    return f"{started:%Y/%m/%d}/[$LATEST]{request_id.replace('-', '')}"


def invocation_events(started: datetime, request_id: str, duration_s: float, memory_mb: int,
                      output: str) -> list[dict[str, Any]]:
    """The events Lambda writes for one invocation: START, each line the handler wrote, END, REPORT."""
    start_ms = int(started.timestamp() * 1000)
    end_ms = start_ms + int(duration_s * 1000)
    lines = [log_events.event(start_ms, f"START RequestId: {request_id} Version: $LATEST")]
    lines += [log_events.event(start_ms, line) for line in output.splitlines()]
    lines.append(log_events.event(end_ms, f"END RequestId: {request_id}"))
    lines.append(log_events.event(end_ms, f"REPORT RequestId: {request_id}\tDuration: {duration_s * 1000:.2f} ms\t"
                                          f"Memory Size: {memory_mb} MB"))
    return lines


def write(client: Any, function_name: str, started: datetime, request_id: str, duration_s: float, memory_mb: int,
          output: str) -> None:
    """Write one invocation's stream (raises what CloudWatch Logs raises: the router logs it and goes on)."""
    group, stream = log_group(function_name), stream_name(started, request_id)
    log_events.ensure_stream(client, group, stream)
    for batch in log_events.batches(invocation_events(started, request_id, duration_s, memory_mb, output)):
        client.put_log_events(logGroupName=group, logStreamName=stream, logEvents=batch)
