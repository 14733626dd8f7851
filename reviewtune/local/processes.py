"""Whether a process is still running, by pid, and whether a local runtime holds its folder: one answer for the
local runtime, the CLI and the tests.

A runtime holds ``<workdir>/local.lock`` (an exclusive ``flock``) from the start of its start-up to the end of its
stop; the kernel lets go of it when the process dies, however it dies. So a local.json is a running runtime's only
while its lock is held: a file left by a killed process, whose pid another process may have taken since, is not.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from typing import IO

LOCK_FILE = "local.lock"


def hold_lock(workdir: Path) -> IO[bytes] | None:
    """Take the folder's runtime lock (kept while the returned file stays open), writing this process's pid in it;
    None when another process holds it."""
    Path(workdir).mkdir(parents=True, exist_ok=True)
    handle = (Path(workdir) / LOCK_FILE).open("ab")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    os.ftruncate(handle.fileno(), 0)
    handle.write(str(os.getpid()).encode())
    handle.flush()
    return handle


def lock_holder(workdir: Path, wait: float = 1.0) -> int | None:
    """The pid of the process holding the folder's runtime lock, as it wrote it right after taking it (waited for up
    to ``wait`` seconds); None when no process holds it, or the holder wrote none (an older version)."""
    deadline = time.monotonic() + wait
    while lock_held(workdir):
        try:
            return int((Path(workdir) / LOCK_FILE).read_text().strip())
        except (OSError, ValueError):
            if time.monotonic() > deadline:
                return None
            time.sleep(0.01)
    return None


def lock_held(workdir: Path) -> bool:
    """Whether a process holds the folder's runtime lock (a runtime starting, running or stopping there)."""
    path = Path(workdir) / LOCK_FILE
    if not path.exists():
        return False
    with path.open("ab") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


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
