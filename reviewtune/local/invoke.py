"""Invoke one Lambda handler with one event, the way the Lambda Python runtime does.

``python -m reviewtune.local.invoke <handler_file> <handler_name> [--timeout S]`` reads the event JSON from stdin,
imports the handler's module from its file, calls ``handler(event, context)`` and prints the JSON result on stdout.
Everything the handler itself prints or logs goes to stderr, so stdout carries the result only. On error it prints
Lambda's error payload (errorMessage, errorType, stackTrace) on stdout, the traceback on stderr, and exits 1;
when the handler runs past its timeout it exits 124.

The router runs this in a subprocess per invocation, with the function's own environment (as Lambda does) and the
function's code folder as working directory and first entry of ``sys.path``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import sys
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

EXIT_FUNCTION_ERROR = 1
EXIT_TIMEOUT = 124


@dataclass
class LambdaContext:
    """The subset of the Lambda context object handlers and Powertools use."""

    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = ""
    deadline_ms: int = 0
    identity: Any = None
    client_context: Any = None

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self.deadline_ms - int(time.time() * 1000))


def make_context(
    handler_file: Path,
    *,
    timeout: float,
    function_arn: str | None = None,
    request_id: str | None = None,
) -> LambdaContext:
    """A context for ``handler_file``: name and memory from the Lambda variables of the environment."""
    name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME") or Path(handler_file).resolve().parent.name
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return LambdaContext(
        function_name=name,
        memory_limit_in_mb=int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")),
        invoked_function_arn=function_arn or f"arn:aws:lambda:{region}:123456789012:function:{name}",
        aws_request_id=request_id or str(uuid.uuid4()),
        log_group_name=os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", f"/aws/lambda/{name}"),
        log_stream_name=os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", ""),
        deadline_ms=int((time.time() + timeout) * 1000),
    )


def load_handler(handler_file: Path, handler_name: str) -> Any:
    """Import the module in ``handler_file`` under a unique name and return its ``handler_name`` attribute."""
    handler_file = Path(handler_file).resolve()
    module_name = f"_reviewtune_handler_{handler_file.stem}_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(module_name, handler_file)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import handler module from {handler_file}")
    module: ModuleType = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    try:
        return getattr(module, handler_name)
    except AttributeError:
        raise AttributeError(f"handler {handler_name!r} not found in {handler_file}") from None


def error_payload(error: BaseException, request_id: str) -> dict[str, Any]:
    """Lambda's payload for a failed invocation."""
    return {
        "errorMessage": str(error),
        "errorType": type(error).__name__,
        "requestId": request_id,
        "stackTrace": traceback.format_tb(error.__traceback__),
    }


def _timeout_handler(timeout: float, result_stream: TextIO) -> Any:
    def on_alarm(signum: int, frame: Any) -> None:
        message = f"Task timed out after {timeout:.2f} seconds"
        sys.stdout.flush()
        print(message, file=sys.stderr, flush=True)
        result_stream.write(json.dumps({"errorMessage": message, "errorType": "Sandbox.Timedout"}))
        result_stream.flush()
        os._exit(EXIT_TIMEOUT)

    return on_alarm


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m reviewtune.local.invoke", description=__doc__.splitlines()[0]
    )
    parser.add_argument("handler_file", type=Path)
    parser.add_argument("handler_name")
    parser.add_argument(
        "--timeout", type=float, default=3.0, help="seconds the handler may run (Lambda Timeout)"
    )
    parser.add_argument("--function-arn", default=None)
    parser.add_argument("--request-id", default=None)
    args = parser.parse_args(argv)

    # stdout carries the result only: whatever the handler prints goes to stderr (Lambda sends both to its logs).
    sys.stdout.flush()
    result_stream = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)

    code_dir = str(Path(args.handler_file).resolve().parent)
    if code_dir not in sys.path[:1]:
        sys.path.insert(0, code_dir)
    context = make_context(
        args.handler_file, timeout=args.timeout, function_arn=args.function_arn, request_id=args.request_id
    )
    try:
        event = json.load(sys.stdin)
        handler = load_handler(args.handler_file, args.handler_name)
        if hasattr(signal, "SIGALRM"):
            signal.signal(signal.SIGALRM, _timeout_handler(args.timeout, result_stream))
            context.deadline_ms = int((time.time() + args.timeout) * 1000)
            signal.setitimer(signal.ITIMER_REAL, args.timeout)
        try:
            result = handler(event, context)
        finally:
            if hasattr(signal, "SIGALRM"):
                signal.setitimer(signal.ITIMER_REAL, 0)
        payload = json.dumps(result)
    except (Exception, SystemExit) as error:  # noqa: BLE001 - every handler error is reported, like Lambda does
        sys.stdout.flush()
        traceback.print_exc(file=sys.stderr)
        sys.stderr.flush()
        result_stream.write(json.dumps(error_payload(error, context.aws_request_id)))
        result_stream.flush()
        return EXIT_FUNCTION_ERROR
    sys.stdout.flush()
    sys.stderr.flush()
    result_stream.write(payload)
    result_stream.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
