"""A job's output lines to CloudWatch Logs, where SageMaker puts them: log group ``/aws/sagemaker/TrainingJobs`` or
``/aws/sagemaker/ProcessingJobs``, stream ``<job name>/algo-1-<epoch seconds of the job's start>``.

So whatever reads a job's log on AWS (``reviewtune runs logs``, ``aws logs tail``, the console) reads the local
runtime's jobs alike, from its CloudWatch Logs endpoint. The lines are also kept in the job folder's ``log.txt``.
Shipping never fails a job: CloudWatch refusing a batch is logged once per stream and the lines stay in log.txt.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from reviewtune.core import names
from reviewtune.local import log_events

logger = logging.getLogger(__name__)

TRAINING_GROUP = names.TRAINING_LOG_GROUP
PROCESSING_GROUP = names.PROCESSING_LOG_GROUP
FLUSH_SECONDS = 2.0
MAX_PENDING_EVENTS = 100_000  # held while CloudWatch refuses; the oldest are dropped past this (log.txt keeps all)
ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", "AWS_ENDPOINT_URL")


def client_from_environment(region: str) -> Any | None:
    """A CloudWatch Logs client where an endpoint is configured (the local runtime's), else None: without one the
    lines would go to the account the credentials name, which a local job has no business writing to."""
    if not any(os.environ.get(name) for name in ENDPOINT_VARIABLES):
        return None
    import boto3  # honours AWS_ENDPOINT_URL_CLOUDWATCH_LOGS

    return boto3.client("logs", region_name=region, config=log_events.CLIENT_CONFIG)


def stream_name(job_name: str, started: float) -> str:
    return f"{job_name}/algo-1-{int(started)}"


@contextmanager
def job_stream(client: Any | None, group: str, job_name: str) -> Iterator[JobLogStream | None]:
    """The stream of one job run (None without a client), flushed and closed when the job's command ends."""
    if client is None:
        yield None
        return
    stream = JobLogStream(client, group, stream_name(job_name, time.time()))
    try:
        yield stream
    finally:
        stream.close()


class JobLogStream:
    """The lines of one job, written to one stream in batches: every ``FLUSH_SECONDS`` and at ``close``."""

    def __init__(self, client: Any, group: str, stream: str, flush_seconds: float = FLUSH_SECONDS) -> None:
        self.client, self.group, self.stream = client, group, stream
        self._pending: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._ready = False
        self._warned = False
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(flush_seconds,), daemon=True,
                                        name=f"logs {stream}")
        self._thread.start()

    def write(self, line: str) -> None:
        with self._lock:
            self._pending.append(log_events.event(int(time.time() * 1000), line))
            del self._pending[:-MAX_PENDING_EVENTS]

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=30)
        self.flush()

    def _loop(self, seconds: float) -> None:
        while not self._closed.wait(seconds):
            self.flush()

    def flush(self) -> None:
        with self._lock:
            events, self._pending = self._pending, []
        try:
            self._create()  # at the first flush, lines or not: a job that printed nothing has its stream, as on AWS
            for batch in log_events.batches(events):
                self.client.put_log_events(logGroupName=self.group, logStreamName=self.stream, logEvents=batch)
                events = events[len(batch):]
        except Exception as error:  # noqa: BLE001 - the job goes on; its lines stay in log.txt
            if not self._warned:
                logger.warning("log lines of %s not written to CloudWatch Logs %s: %s", self.stream, self.group, error)
                self._warned = True
            with self._lock:
                self._pending = (events + self._pending)[-MAX_PENDING_EVENTS:]

    def _create(self) -> None:
        if not self._ready:
            log_events.ensure_stream(self.client, self.group, self.stream)
            self._ready = True
