"""EventBridge → SQS → handler: deliver each function's events to its handler, as Lambda's async invocation does.

One thread per function long-polls the function's inbox queue (where its EventBridge rules deliver) and invokes
the handler in a subprocess (``python -m reviewtune.local.invoke``) with the function's own environment and
Timeout. A failed invocation is retried ``maximum_retry_attempts`` times (Lambda's default: 2) after a delay, then
the event goes to the function's dead-letter queue(s) with Lambda's DLQ message attributes.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import reviewtune
from reviewtune.local import function_logs
from reviewtune.local.invoke import EXIT_TIMEOUT
from reviewtune.local.stack import FunctionSpec

logger = logging.getLogger(__name__)

# Variables of this process a handler subprocess may see; everything else comes from the function's configuration.
_INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "SYSTEMROOT", "VIRTUAL_ENV")
_TAIL_CHARS = 4000
# Time a handler subprocess gets on top of the function's Timeout to start Python and import its modules.
_STARTUP_GRACE_S = 30.0


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    RETRYING = "retrying"  # failed; the event is delivered again after a delay
    DEAD_LETTERED = "dead-lettered"  # failed for the last time; the event went to the dead-letter queue(s)
    DISCARDED = "discarded"  # failed for the last time and the function has no dead-letter queue


@dataclass(frozen=True)
class Invocation:
    """One handler invocation."""

    timestamp: datetime
    function: str
    detail_type: str | None
    source: str | None
    request_id: str
    attempt: int
    outcome: Outcome
    duration_s: float
    exit_code: int
    result: Any = None
    error: str | None = None
    output_tail: str = ""


@dataclass(frozen=True)
class _Run:
    exit_code: int
    stdout: str
    stderr: str
    duration_s: float


def package_root() -> Path:
    """The folder that holds the ``reviewtune`` package (put on the handlers' PYTHONPATH)."""
    return Path(reviewtune.__file__).resolve().parent.parent


def function_environment(spec: FunctionSpec, common: Mapping[str, str]) -> dict[str, str]:
    """The environment a handler of ``spec`` runs with: Lambda's own variables, the function's variables from the
    template, then ``common`` (endpoints, credentials, region), which wins."""
    module = spec.handler_file.relative_to(spec.code_dir).with_suffix("").as_posix().replace("/", ".")
    python_path = [*(str(path) for path in spec.layer_dirs), str(package_root())]
    region = common.get("AWS_REGION") or common.get("AWS_DEFAULT_REGION") or "us-east-1"
    environment = {name: os.environ[name] for name in _INHERITED if name in os.environ}
    environment.update(
        {
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "AWS_LAMBDA_FUNCTION_NAME": spec.function_name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_size),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.function_name}",
            "LAMBDA_TASK_ROOT": str(spec.code_dir),
            "_HANDLER": f"{module}.{spec.handler_name}",
            "TZ": ":UTC",
            "PYTHONPATH": os.pathsep.join(python_path),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    environment.update(spec.environment)
    environment.update(common)
    environment["POWERTOOLS_TRACE_DISABLED"] = "1"  # no X-Ray daemon locally
    return environment


def _tail(text: str) -> str:
    return text[-_TAIL_CHARS:]


class Router:
    """Delivers the events in each function's inbox queue to its handler."""

    def __init__(
        self,
        functions: Sequence[FunctionSpec],
        *,
        sqs_client: Any,
        environment: Mapping[str, str],
        log_dir: Path,
        on_invocation: Callable[[Invocation], None] | None = None,
        logs_client: Any = None,
        retry_delay_s: float = 1.0,
        wait_time_s: int = 1,
        python: str = sys.executable,
    ) -> None:
        self.functions = {spec.logical_id: spec for spec in functions}
        self.on_invocation = on_invocation
        self.retry_delay_s = retry_delay_s
        self._sqs = sqs_client
        self._environment = dict(environment)
        self._log_dir = Path(log_dir)
        self._logs = logs_client  # CloudWatch Logs: each invocation's lines go there too (function_logs.py)
        self._wait_time_s = wait_time_s
        self._python = python
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._processes: set[subprocess.Popen[str]] = set()
        self._in_flight = 0
        self._invocations: list[Invocation] = []

    # -- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> Router:
        if self._threads:
            raise RuntimeError("router already started")
        self._log_dir.mkdir(parents=True, exist_ok=True)
        self._stop.clear()
        for spec in self.functions.values():
            thread = threading.Thread(
                target=self._poll, args=(spec,), name=f"router-{spec.logical_id}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop polling and kill running handlers; their events stay in the inbox. A second call does nothing."""
        self._stop.set()
        # No lock here: stop() may run in a signal handler that interrupted a holder of self._lock.
        for process in tuple(self._processes):
            process.kill()
        threads, self._threads = self._threads, []
        for thread in threads:
            thread.join(timeout)
            if thread.is_alive():
                logger.warning("router thread %s did not stop within %.0f s", thread.name, timeout)

    # -- observing ------------------------------------------------------------------------------------------

    @property
    def invocations(self) -> list[Invocation]:
        """Every invocation so far, oldest first (a copy)."""
        with self._lock:
            return list(self._invocations)

    def log_file(self, function: str) -> Path:
        return self._log_dir / f"{function}.log"

    def wait_idle(self, timeout: float = 60.0, poll_s: float = 0.2) -> bool:
        """Wait until no handler runs and every inbox queue is empty (events waiting for a retry count as
        pending). Returns False when ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        quiet_checks = 0
        while time.monotonic() < deadline:
            quiet_checks = quiet_checks + 1 if self._idle_now() else 0
            if quiet_checks >= 2:
                return True
            time.sleep(poll_s)
        return False

    def _idle_now(self) -> bool:
        with self._lock:
            if self._in_flight:
                return False
        names = (
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        )
        for spec in self.functions.values():
            attributes = self._sqs.get_queue_attributes(
                QueueUrl=spec.inbox_queue_url, AttributeNames=list(names)
            )
            if any(int(attributes["Attributes"].get(name, 0)) for name in names):
                return False
        with self._lock:
            return not self._in_flight

    # -- invoking -------------------------------------------------------------------------------------------

    def invoke(self, function: str, event: Any) -> Invocation:
        """Invoke ``function`` once with ``event``, synchronously, outside the queues (no retry)."""
        spec = self.functions[function]
        body = event if isinstance(event, str) else json.dumps(event)
        return self._invoke(spec, body, attempt=1, final=True, dead_letter=False)

    def _poll(self, spec: FunctionSpec) -> None:
        while not self._stop.is_set():
            try:
                response = self._sqs.receive_message(
                    QueueUrl=spec.inbox_queue_url,
                    MaxNumberOfMessages=1,
                    WaitTimeSeconds=self._wait_time_s,
                    VisibilityTimeout=int(spec.timeout + _STARTUP_GRACE_S + 30),
                    AttributeNames=["ApproximateReceiveCount"],
                )
            except Exception as error:  # noqa: BLE001 - the server may be going away; keep polling until stopped
                if not self._stop.is_set():
                    logger.warning("cannot poll the inbox of %s: %s", spec.logical_id, error)
                    self._stop.wait(1.0)
                continue
            for message in response.get("Messages", []):
                if self._stop.is_set():
                    return
                with self._lock:
                    self._in_flight += 1
                try:
                    self._deliver(spec, message)
                except Exception:  # noqa: BLE001 - one bad message must not stop the function's router
                    logger.exception("delivering a message to %s failed", spec.logical_id)
                finally:
                    with self._lock:
                        self._in_flight -= 1

    def _deliver(self, spec: FunctionSpec, message: Mapping[str, Any]) -> None:
        attempt = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        final = attempt > spec.maximum_retry_attempts
        invocation = self._invoke(spec, message["Body"], attempt=attempt, final=final, dead_letter=True)
        if self._stop.is_set() and invocation.outcome is not Outcome.SUCCEEDED:
            return  # killed by stop(): leave the event in the queue
        if invocation.outcome is Outcome.RETRYING:
            delay = max(0, round(self.retry_delay_s * attempt))
            self._sqs.change_message_visibility(
                QueueUrl=spec.inbox_queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=delay
            )
        else:
            self._sqs.delete_message(QueueUrl=spec.inbox_queue_url, ReceiptHandle=message["ReceiptHandle"])

    def _invoke(
        self, spec: FunctionSpec, body: str, *, attempt: int, final: bool, dead_letter: bool
    ) -> Invocation:
        try:
            event = json.loads(body)
        except ValueError:
            event = body
        if isinstance(event, dict) and "detail-type" in event and "account" not in event:
            # moto's EventBridge leaves `account` out of events sent with PutEvents; EventBridge always sets it.
            event["account"] = spec.function_arn.split(":")[4]
            body = json.dumps(event)
        detail_type = event.get("detail-type") if isinstance(event, dict) else None
        source = event.get("source") if isinstance(event, dict) else None
        request_id = str(uuid.uuid4())
        started = datetime.now(UTC)
        run = self._run(spec, body, request_id)
        payload: Any = None
        try:
            payload = json.loads(run.stdout) if run.stdout.strip() else None
        except ValueError:
            payload = run.stdout
        error = None
        if run.exit_code == 0:
            outcome = Outcome.SUCCEEDED
        else:
            error = payload.get("errorMessage") if isinstance(payload, dict) else None
            error = error or f"handler exited with code {run.exit_code}"
            if isinstance(payload, dict) and payload.get("errorType"):
                error = f"{payload['errorType']}: {error}"
            if not final or (dead_letter and self._stop.is_set()):
                outcome = Outcome.RETRYING  # when stopping, the event stays in the inbox
            elif not dead_letter:
                outcome = Outcome.DISCARDED
            else:
                queues = spec.dead_letter_queue_urls(event if isinstance(event, dict) else {})
                for queue_url in queues:
                    self._sqs.send_message(
                        QueueUrl=queue_url,
                        MessageBody=body,
                        MessageAttributes={
                            "RequestID": {"DataType": "String", "StringValue": request_id},
                            "ErrorCode": {"DataType": "Number", "StringValue": "200"},
                            "ErrorMessage": {"DataType": "String", "StringValue": error[:1024]},
                        },
                    )
                outcome = Outcome.DEAD_LETTERED if queues else Outcome.DISCARDED
        invocation = Invocation(
            timestamp=started,
            function=spec.logical_id,
            detail_type=detail_type,
            source=source,
            request_id=request_id,
            attempt=attempt,
            outcome=outcome,
            duration_s=run.duration_s,
            exit_code=run.exit_code,
            result=payload if outcome is Outcome.SUCCEEDED else None,
            error=error,
            output_tail=_tail(run.stderr),
        )
        self._record(spec, invocation, run)
        return invocation

    def _run(self, spec: FunctionSpec, body: str, request_id: str) -> _Run:
        command = [
            self._python,
            "-m",
            "reviewtune.local.invoke",
            str(spec.handler_file),
            spec.handler_name,
            "--timeout",
            str(spec.timeout),
            "--function-arn",
            spec.function_arn,
            "--request-id",
            request_id,
        ]
        started = time.monotonic()
        process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=spec.code_dir,
            env=function_environment(spec, self._environment),
        )
        with self._lock:
            self._processes.add(process)
        try:
            stdout, stderr = process.communicate(body, timeout=spec.timeout + _STARTUP_GRACE_S)
            exit_code = process.returncode
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
            stdout = json.dumps({"errorMessage": f"Task timed out after {spec.timeout} seconds"})
            exit_code = EXIT_TIMEOUT
        finally:
            with self._lock:
                self._processes.discard(process)
        return _Run(exit_code, stdout, stderr, time.monotonic() - started)

    def _record(self, spec: FunctionSpec, invocation: Invocation, run: _Run) -> None:
        with self._lock:
            self._invocations.append(invocation)
        header = (
            f"=== {invocation.timestamp.isoformat()} {spec.logical_id} request {invocation.request_id} "
            f"attempt {invocation.attempt} detail-type {invocation.detail_type!r}"
        )
        footer = (
            f"=== {invocation.outcome.value} in {invocation.duration_s:.2f} s (exit {invocation.exit_code})"
        )
        if invocation.error:
            footer += f": {invocation.error}"
        result = f"--- result: {run.stdout}\n" if invocation.outcome is Outcome.SUCCEEDED else ""
        try:
            with self.log_file(spec.logical_id).open("a", encoding="utf-8") as log:
                log.write(
                    f"{header}\n{run.stderr}{'' if run.stderr.endswith(chr(10)) or not run.stderr else chr(10)}"
                )
                log.write(f"{result}{footer}\n")
        except OSError as error:  # a full disk: the invocation happened all the same, and is not made again
            logger.warning("log lines of %s not written to %s: %s", spec.logical_id, self.log_file(spec.logical_id),
                           error)
        if self._logs is not None:
            try:
                function_logs.write(self._logs, spec.function_name, invocation.timestamp, invocation.request_id,
                                    invocation.duration_s, spec.memory_size, run.stderr)
            except Exception as error:  # noqa: BLE001 - the lines are in the log file; delivery goes on
                logger.warning("log lines of %s not written to CloudWatch Logs: %s", spec.logical_id, error)
        level = logging.INFO if invocation.outcome is Outcome.SUCCEEDED else logging.WARNING
        logger.log(level, "%s %s: %s", spec.logical_id, invocation.detail_type, footer.removeprefix("=== "))
        if self.on_invocation is not None:
            try:
                self.on_invocation(invocation)
            except Exception:  # noqa: BLE001 - a progress display must not break delivery
                logger.exception("on_invocation callback failed")
