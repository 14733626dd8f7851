"""Whether a process is still running, by pid: one answer for the local runtime, the CLI and the tests."""

from __future__ import annotations

import os
from pathlib import Path


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs; False once it has exited, including an exited process its parent has not reaped yet
    (a zombie). A child of this process is reaped on the way."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)  # reaps it when it is a child of ours
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # an exited process that its parent has not reaped yet (a zombie) is not running
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True
