"""`python -m reviewtune.local.invoke` runs one handler with one event, like the Lambda Python runtime."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from reviewtune.local.router import package_root

HANDLER = """\
import os
import sys
import time

import helper


def handler(event, context):
    print("printed by the handler")
    return {
        "event": event,
        "setting": os.environ["SETTING"],
        "helper": helper.NAME,
        "function_name": context.function_name,
        "memory": context.memory_limit_in_mb,
        "arn": context.invoked_function_arn,
        "request_id": context.aws_request_id,
        "remaining_ok": 0 < context.get_remaining_time_in_millis() <= 5000,
    }


def failing(event, context):
    raise ValueError(f"bad event {event['n']}")


def slow(event, context):
    time.sleep(30)
"""


def invoke(
    code_dir: Path, name: str, event: object, *, timeout: float = 5, **env: str
) -> subprocess.CompletedProcess:
    environment = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(package_root()),
        "AWS_LAMBDA_FUNCTION_NAME": "my-function",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        **env,
    }
    command = [sys.executable, "-m", "reviewtune.local.invoke", str(code_dir / "app.py"), name]
    command += [
        "--timeout",
        str(timeout),
        "--function-arn",
        "arn:aws:lambda:us-east-1:1:function:my-function",
    ]
    return subprocess.run(
        command,
        input=json.dumps(event),
        capture_output=True,
        text=True,
        env=environment,
        cwd=code_dir,
        timeout=60,
    )


def write_function(tmp_path: Path) -> Path:
    code_dir = tmp_path / "fn"
    code_dir.mkdir()
    (code_dir / "app.py").write_text(textwrap.dedent(HANDLER))
    (code_dir / "helper.py").write_text('NAME = "next to app.py"\n')
    return code_dir


def test_handler_gets_event_environment_and_context(tmp_path: Path) -> None:
    code_dir = write_function(tmp_path)

    completed = invoke(code_dir, "handler", {"detail": {"n": 1}}, SETTING="from-template")

    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)  # stdout holds the result only
    assert result.pop("request_id")
    assert result == {
        "event": {"detail": {"n": 1}},
        "setting": "from-template",
        "helper": "next to app.py",
        "function_name": "my-function",
        "memory": 512,
        "arn": "arn:aws:lambda:us-east-1:1:function:my-function",
        "remaining_ok": True,
    }
    assert "printed by the handler" in completed.stderr


def test_handler_error_exits_non_zero_with_lambda_error_payload(tmp_path: Path) -> None:
    code_dir = write_function(tmp_path)

    completed = invoke(code_dir, "failing", {"n": 7})

    assert completed.returncode == 1
    payload = json.loads(completed.stdout)
    assert (payload["errorType"], payload["errorMessage"]) == ("ValueError", "bad event 7")
    assert "Traceback" in completed.stderr
    assert "ValueError: bad event 7" in completed.stderr


def test_handler_past_its_timeout_is_stopped(tmp_path: Path) -> None:
    code_dir = write_function(tmp_path)

    completed = invoke(code_dir, "slow", {}, timeout=0.5)

    assert completed.returncode == 124
    assert json.loads(completed.stdout)["errorMessage"] == "Task timed out after 0.50 seconds"


def test_missing_handler_is_an_error(tmp_path: Path) -> None:
    code_dir = write_function(tmp_path)

    completed = invoke(code_dir, "nope", {})

    assert completed.returncode == 1
    assert "handler 'nope' not found" in json.loads(completed.stdout)["errorMessage"]
