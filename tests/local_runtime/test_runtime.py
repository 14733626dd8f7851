"""LocalRuntime: start, describe itself, stop without leaving anything behind; `local down` from another process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from reviewtune.console.target import local_target
from reviewtune.local.processes import hold_lock
from reviewtune.local.router import package_root
from reviewtune.local.runtime import LocalRuntime, LocalRuntimeError, stop_running
from reviewtune.local.stack import StackError
from tests.local_runtime.conftest import FakeSageMaker

ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_SAGEMAKER")


def port_open(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex((host, int(port))) == 0


def wait_for_threads(allowed: set[threading.Thread], timeout: float = 5.0) -> set[str]:
    deadline = time.monotonic() + timeout
    while True:
        extra = {
            thread.name for thread in threading.enumerate() if thread not in allowed and thread.is_alive()
        }
        if not extra or time.monotonic() > deadline:
            return extra
        time.sleep(0.05)


def test_start_describes_the_runtime_and_stop_leaves_nothing_behind(
    sam_app: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://previous")
    monkeypatch.delenv("AWS_ENDPOINT_URL_SQS", raising=False)
    threads_before = set(threading.enumerate())
    workdir = tmp_path / "state"
    runtime = LocalRuntime(
        workdir=workdir, template=sam_app, parameters={"Greeting": "hey"}, sagemaker_factory=FakeSageMaker
    )

    with runtime:
        # THEN this process's clients point at the runtime, and local.json says where everything is
        endpoints = runtime.endpoints
        assert os.environ["AWS_ENDPOINT_URL_S3"] == endpoints["s3"]
        assert os.environ["AWS_ENDPOINT_URL_SAGEMAKER"] == endpoints["sagemaker"]
        state = json.loads((workdir / "local.json").read_text())
        assert state["pid"] == os.getpid()
        assert state["endpoints"] == endpoints
        assert state["outputs"] == runtime.outputs
        assert state["parameters"]["Greeting"] == "hey"  # as deployed: the commands' defaults follow them
        assert local_target(workdir).parameters == state["parameters"]
        assert set(state["functions"]) == {"RecorderFunction", "FailingFunction"}
        assert f"export AWS_ENDPOINT_URL_SAGEMAKER={endpoints['sagemaker']}" in runtime.export_lines()
        # AND the SageMaker service got the runtime's account, region and folder
        service = FakeSageMaker.instances[-1]
        assert service.kwargs["workdir"] == workdir / "sagemaker"
        assert (service.kwargs["region"], service.kwargs["account_id"]) == ("us-east-1", "123456789012")
        # AND its clients reach the stack
        runtime.client("s3").head_bucket(Bucket=runtime.outputs["DataBucketName"])
        assert runtime.table(runtime.outputs["EventsTableName"]).table_status == "ACTIVE"
        assert port_open(endpoints["s3"]) and port_open(endpoints["sagemaker"])
    runtime.stop()  # a second stop does nothing

    # THEN ports, threads, environment and local.json are as before
    assert service.stopped
    assert not port_open(endpoints["s3"]) and not port_open(endpoints["sagemaker"])
    assert wait_for_threads(threads_before) == set()
    assert os.environ["AWS_ENDPOINT_URL_S3"] == "http://previous"
    assert "AWS_ENDPOINT_URL_SQS" not in os.environ
    assert not (workdir / "local.json").exists()


def test_failed_start_stops_what_was_started(sam_app: Path, tmp_path: Path) -> None:
    threads_before = set(threading.enumerate())
    runtime = LocalRuntime(
        workdir=tmp_path, template=sam_app, parameters={"Strategy": "Grid"}, sagemaker_factory=FakeSageMaker
    )

    with pytest.raises(StackError, match="Strategy='Grid' must be one of"):
        runtime.start()

    assert FakeSageMaker.instances[-1].stopped
    assert wait_for_threads(threads_before) == set()
    assert "AWS_ENDPOINT_URL_SAGEMAKER" not in os.environ
    assert not (tmp_path / "local.json").exists()


HOLDER = """
import sys, time
from pathlib import Path
from reviewtune.local.processes import hold_lock

lock = hold_lock(Path(sys.argv[1]))
print("held" if lock else "refused", flush=True)
time.sleep(60)
"""


def test_a_second_runtime_for_the_same_folder_is_refused_even_while_the_first_starts(
    sam_app: Path, tmp_path: Path
) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                              cwd=package_root())
    try:
        assert holder.stdout.readline().strip() == "held"  # a runtime starting: no local.json yet
        runtime = LocalRuntime(workdir=tmp_path, template=sam_app, sagemaker_factory=FakeSageMaker)
        with pytest.raises(LocalRuntimeError, match="already running for .* \\(starting\\)"):
            runtime.start()
        (tmp_path / "local.json").write_text(json.dumps({"pid": holder.pid}))  # started
        with pytest.raises(LocalRuntimeError, match=f"already running for .* \\(pid {holder.pid}\\)"):
            LocalRuntime(workdir=tmp_path, template=sam_app, sagemaker_factory=FakeSageMaker).start()
    finally:
        holder.kill()
        holder.wait()


def test_a_state_file_naming_a_live_process_that_holds_no_runtime_is_stale(sam_app: Path, tmp_path: Path) -> None:
    """A local.json left by a killed runtime whose pid another process took since: `local down` must not signal
    that process, and a new runtime takes the folder."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "local.json").write_text(json.dumps({"pid": other.pid}))
        reported: list[str] = []
        assert stop_running(tmp_path, report=reported.append) is None
        assert "is gone or is no runtime" in reported[0] and other.poll() is None
        assert not (tmp_path / "local.json").exists()
        (tmp_path / "local.json").write_text(json.dumps({"pid": other.pid}))
        with LocalRuntime(workdir=tmp_path, template=sam_app, sagemaker_factory=FakeSageMaker):
            assert json.loads((tmp_path / "local.json").read_text())["pid"] == os.getpid()
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


RUNNER = """
import signal, sys
from pathlib import Path
from reviewtune.local.runtime import LocalRuntime
from tests.local_runtime.conftest import FakeSageMaker

signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # taken by sigwait below, in every thread
with LocalRuntime(workdir=Path(sys.argv[1]), template=Path(sys.argv[2]), sagemaker_factory=FakeSageMaker):
    print("ready", flush=True)
    signal.sigwait({signal.SIGTERM})
"""


def test_stop_running_stops_the_runtime_of_another_process(sam_app: Path, tmp_path: Path) -> None:
    root = package_root()
    workdir, stderr = tmp_path / "state", tmp_path / "stderr.txt"
    with stderr.open("w") as stderr_file:
        process = subprocess.Popen(
            [sys.executable, "-c", RUNNER, str(workdir), str(sam_app)],
            stdout=subprocess.PIPE,
            stderr=stderr_file,
            text=True,
            cwd=root,
            env={**os.environ, "PYTHONPATH": str(root)},
        )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready", stderr.read_text()
        endpoints = json.loads((workdir / "local.json").read_text())["endpoints"]
        messages: list[str] = []

        assert stop_running(workdir, timeout=60, report=messages.append) == process.pid, stderr.read_text()

        assert not port_open(endpoints["s3"]) and not port_open(endpoints["sagemaker"])
        assert messages == [f"stopped the local runtime (pid {process.pid})"]
        assert not (workdir / "local.json").exists()
    finally:
        process.kill()
        process.wait()


def test_stop_running_says_when_nothing_runs(tmp_path: Path) -> None:
    messages: list[str] = []

    assert stop_running(tmp_path, report=messages.append) is None
    assert messages == [
        f"no local runtime is running: {tmp_path / 'local.json'} does not exist (start one with `reviewtune local up`)"
    ]

    (tmp_path / "local.json").write_text(json.dumps({"pid": 2**22 + 1}))
    assert stop_running(tmp_path, report=messages.append) is None
    assert "is gone or is no runtime (removed the stale file)" in messages[-1]
    assert not (tmp_path / "local.json").exists()


# A runtime's start-up as another process makes it: the folder's lock first, its local.json a second later.
STARTING = """
import json, os, sys, time
from pathlib import Path
from reviewtune.local.processes import hold_lock
lock = hold_lock(Path(sys.argv[1]))
print("locked", flush=True)
time.sleep(1.0)
(Path(sys.argv[1]) / "local.json").write_text(json.dumps({"pid": os.getpid()}))
time.sleep(60)
"""


def starting_runtime(workdir: Path) -> subprocess.Popen:
    runtime = subprocess.Popen([sys.executable, "-c", STARTING, str(workdir)], cwd=package_root(),
                               stdout=subprocess.PIPE, text=True)
    assert runtime.stdout.readline() == "locked\n"
    return runtime


def test_stop_running_while_a_runtime_starts_waits_until_it_serves_then_stops_it(tmp_path: Path) -> None:
    """`local down` during `local up`'s start-up (its lock held, no local.json yet) said nothing was running, and the
    runtime then came up and stayed up."""
    runtime = starting_runtime(tmp_path)
    messages: list[str] = []
    try:
        assert stop_running(tmp_path, timeout=30, report=messages.append) == runtime.pid
        assert messages == [f"stopped the local runtime (pid {runtime.pid})"]
    finally:
        runtime.kill()
        runtime.wait()


@pytest.mark.parametrize("stale_pid", ["gone", "another process"])
def test_stop_running_while_a_runtime_starts_over_a_killed_one_s_state_stops_it_and_signals_no_one_else(
        tmp_path: Path, stale_pid: str) -> None:
    """A killed runtime's local.json is still there while the next start holds the lock (the start removes it then):
    `local down` waits for the starting runtime's own state, whatever the stale pid names now."""
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (tmp_path / "local.json").write_text(json.dumps({"pid": gone.pid if stale_pid == "gone" else bystander.pid}))
    runtime = starting_runtime(tmp_path)
    messages: list[str] = []
    try:
        assert stop_running(tmp_path, timeout=30, report=messages.append) == runtime.pid
        assert messages == [f"stopped the local runtime (pid {runtime.pid})"] and bystander.poll() is None
    finally:
        for process in (runtime, bystander):
            process.kill()
            process.wait()


def test_stop_running_while_a_start_fails_says_nothing_runs(tmp_path: Path) -> None:
    lock = hold_lock(tmp_path)
    threading.Timer(1.0, lock.close).start()  # the start ends without serving
    messages: list[str] = []
    assert stop_running(tmp_path, timeout=30, report=messages.append) is None
    assert messages == [f"no local runtime is running: the one starting in {tmp_path} ended before it served"]
