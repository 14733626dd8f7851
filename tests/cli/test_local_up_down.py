"""`reviewtune local up` serves the stack on 127.0.0.1 until `reviewtune local down` stops it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import boto3

from tests.support.aws import ROOT


def test_local_up_prints_endpoints_and_outputs_and_local_down_stops_it(tmp_path):
    workdir = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    log = tmp_path / "up.log"
    with open(log, "w") as out:
        up = subprocess.Popen(
            [sys.executable, "-m", "reviewtune.cli", "--workdir", str(workdir), "local", "up", "--param", "MaxJobs=3"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, text=True,
        )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and "written to" not in log.read_text():
            assert up.poll() is None, "local up ended early:\n" + log.read_text()
            time.sleep(0.5)
        lines = log.read_text().splitlines(keepends=True)
        exports = dict(line[len("export "):].strip().split("=", 1) for line in lines if line.startswith("export "))
        for service in ("S3", "DYNAMODB", "SNS", "SQS", "EVENTBRIDGE", "SAGEMAKER"):
            assert exports[f"AWS_ENDPOINT_URL_{service}"].startswith("http://127.0.0.1:")
        state = json.loads((workdir / "local.json").read_text())
        bucket = state["outputs"]["DataBucketName"]
        assert f"# DataBucketName = {bucket}\n" in lines
        assert "# parameter MaxJobs = 3 (--param)\n" in lines and state["parameters"]["MaxJobs"] == "3"
        s3 = boto3.client("s3", endpoint_url=exports["AWS_ENDPOINT_URL_S3"], region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
        assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]
        sagemaker = boto3.client("sagemaker", endpoint_url=exports["AWS_ENDPOINT_URL_SAGEMAKER"], region_name="us-east-1",
                                 aws_access_key_id="testing", aws_secret_access_key="testing")
        assert sagemaker.list_hyper_parameter_tuning_jobs()["HyperParameterTuningJobSummaries"] == []
        # the stop signals are not blocked: the jobs and handlers it starts inherit its mask, and must get SIGTERM
        status = Path(f"/proc/{up.pid}/status").read_text()
        blocked = next(line for line in status.splitlines() if line.startswith("SigBlk:"))
        assert int(blocked.split()[1], 16) == 0, blocked
        second = subprocess.run([sys.executable, "-m", "reviewtune.cli", "--workdir", str(workdir), "local", "up"],
                                cwd=ROOT, env=env, capture_output=True, text=True, timeout=90)
        assert second.returncode == 1 and "Traceback" not in second.stderr
        assert f"error: a local runtime is already running for {workdir} (pid {up.pid})" in second.stderr

        down = subprocess.run([sys.executable, "-m", "reviewtune.cli", "--workdir", str(workdir), "local", "down"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=90)
        assert down.returncode == 0, down.stderr
        assert up.wait(timeout=60) == 0
        assert "# local runtime stopped" in log.read_text()
        assert not (workdir / "local.json").exists()
    finally:
        if up.poll() is None:
            up.kill()


def test_a_closed_terminal_stops_the_runtime_and_leaves_nothing_behind(tmp_path):
    """SIGHUP (the terminal closed) stops it as Ctrl-C does: local.json removed, the folder free again."""
    import signal

    workdir = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    log = tmp_path / "up.log"
    with open(log, "w") as out:
        up = subprocess.Popen([sys.executable, "-m", "reviewtune.cli", "--workdir", str(workdir), "local", "up"],
                              cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and "written to" not in log.read_text():
            assert up.poll() is None, "local up ended early:\n" + log.read_text()
            time.sleep(0.5)
        up.send_signal(signal.SIGHUP)
        assert up.wait(timeout=60) == 0
        assert "# local runtime stopped" in log.read_text() and not (workdir / "local.json").exists()
        from reviewtune.local.processes import lock_held

        assert not lock_held(workdir)
    finally:
        if up.poll() is None:
            up.kill()


def test_local_down_says_when_nothing_runs(tmp_path):
    down = subprocess.run([sys.executable, "-m", "reviewtune.cli", "--workdir", str(tmp_path), "local", "down"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert down.returncode == 1
    assert "no local runtime is running" in down.stderr


def test_a_relative_workdir_becomes_absolute_for_the_jobs(tmp_path, monkeypatch):
    from reviewtune.local.runtime import LocalRuntime

    monkeypatch.chdir(tmp_path)
    assert LocalRuntime(workdir="state").workdir == tmp_path / "state"
