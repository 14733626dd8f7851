"""How a job's container command runs: a JobRunner turns one RunSpec into output lines and an exit code.

``SubprocessRunner`` really runs the command (its own process group, stdout and stderr merged);
``ScriptedRunner`` replays scripted output lines without any process, for tests of the tuning logic.
Both return soon after the ``stop`` event is set, with the exit code of a terminated process.
"""

from __future__ import annotations

import abc
import contextlib
import errno
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

STOPPED_EXIT_CODE = -signal.SIGTERM


@dataclass(frozen=True)
class RunSpec:
    """One container run: the command with its environment and working directory."""

    job_name: str
    command: list[str]
    env: dict[str, str]
    cwd: Path
    hyperparameters: dict[str, str] = field(default_factory=dict)


LineSink = Callable[[str], None]


class JobRunner(abc.ABC):
    """Runs a RunSpec to its end."""

    @abc.abstractmethod
    def run(self, spec: RunSpec, on_line: LineSink, stop: threading.Event) -> int:
        """Run ``spec``, call ``on_line`` for every output line (no newline), return the exit code.

        Must return soon after ``stop`` is set; a run ended that way returns a non-zero code.
        """


class SubprocessRunner(JobRunner):
    """Runs the command as a subprocess; on stop sends SIGTERM to its process group, then SIGKILL after
    ``stop_grace_seconds`` (SageMaker waits 120 s; train.py saves the model of its validated epochs on SIGTERM,
    which for all-mpnet-base-v2 writes 440 MB)."""

    def __init__(self, stop_grace_seconds: float = 30.0) -> None:
        self.stop_grace_seconds = stop_grace_seconds

    def run(self, spec: RunSpec, on_line: LineSink, stop: threading.Event) -> int:
        env = {**spec.env, "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen(
            tied_to_parent(spec.command, env.get("PATH", os.defpath), spec.cwd),
            cwd=spec.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            bufsize=1,
            start_new_session=True,
        )
        watcher = threading.Thread(
            target=self._watch, args=(process, stop), name=f"watch-{spec.job_name}", daemon=True
        )
        watcher.start()
        assert process.stdout is not None
        try:
            with process.stdout:
                for line in process.stdout:
                    on_line(line.rstrip("\r\n"))
        except BaseException:
            _signal_group(process.pid, signal.SIGKILL)  # nothing may outlive a run that could not be followed
            process.wait()
            raise
        code = process.wait()
        watcher.join()
        return code

    def _watch(self, process: subprocess.Popen, stop: threading.Event) -> None:
        while not stop.wait(0.1):
            if process.poll() is not None:
                # The main process ended: like a container, nothing it started outlives it.
                _signal_group(process.pid, signal.SIGKILL)
                return
        _signal_group(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=self.stop_grace_seconds)
        _signal_group(process.pid, signal.SIGKILL)


# Run before the job's command, in its own process: the kernel kills it when the thread that started it dies
# (PR_SET_PDEATHSIG), so a job never outlives a runtime killed at once (kill -9, the out-of-memory killer), which no
# handler of the runtime's own would see; then it becomes the command (exec), which keeps that setting.
_TIE_TO_PARENT = (
    "import ctypes, os, signal, sys\n"
    "parent = int(sys.argv[1])\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG\n"
    "if os.getppid() != parent:\n"
    "    sys.exit(137)  # the runtime died before the setting took: as if killed with it\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


def tied_to_parent(command: list[str], path: str | None = None, cwd: Path | None = None) -> list[str]:
    """``command`` started so that the kernel kills it when this process dies (Linux; elsewhere as it is). Its
    program is looked up first (on ``path``, the job's PATH, or in ``cwd`` for a path): a missing one raises
    FileNotFoundError naming it, as starting it directly would. The wrapper's Python is isolated (-I -S): the job's PYTHON* variables and the modules
    of its code folder are the job's, not the wrapper's."""
    if not sys.platform.startswith("linux"):
        return command
    program = command[0]
    if os.sep in program:  # a path: the job's folder is where it is looked for
        found = os.access(Path(cwd or ".") / program, os.X_OK)
    else:
        found = shutil.which(program, path=path) is not None
    if not found:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)
    return [sys.executable, "-I", "-S", "-c", _TIE_TO_PARENT, str(os.getpid()), *command]


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


@dataclass(frozen=True)
class ScriptedRun:
    """What a scripted job prints and how it exits."""

    lines: Iterable[str]
    exit_code: int = 0


Script = Callable[[RunSpec], ScriptedRun]


class ScriptedRunner(JobRunner):
    """Replays the lines a ``script(spec)`` returns, in order, with no process.

    ``line_delay`` seconds pass between lines (0 by default); a stop ends the run with STOPPED_EXIT_CODE.
    ``runs`` records every spec, for assertions.
    """

    def __init__(self, script: Script, line_delay: float = 0.0) -> None:
        self.script = script
        self.line_delay = line_delay
        self.runs: list[RunSpec] = []
        self._lock = threading.Lock()

    def run(self, spec: RunSpec, on_line: LineSink, stop: threading.Event) -> int:
        with self._lock:
            self.runs.append(spec)
        scripted = self.script(spec)
        for line in scripted.lines:
            if stop.is_set() or (self.line_delay and stop.wait(self.line_delay)):
                return STOPPED_EXIT_CODE
            on_line(line)
        return STOPPED_EXIT_CODE if stop.is_set() else scripted.exit_code
