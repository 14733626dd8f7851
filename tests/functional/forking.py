"""One pass of a scenario that stands for many: at each chosen call, the process forks; the child takes a fault there
and goes on to the scenario's end and its verdict, the parent waits for it and goes on without the fault.

tests/functional/test_crash_points.py used to run the whole scenario again, from an empty stack, for every call it
faults. Up to the faulted call every run is the same as the run without a fault (that test asserts it), so a child
forked at that call starts from exactly the state those runs reach there: the moto backends, the in-memory SageMaker,
the test's clock, all of the process. Each fault then costs what follows the call only.

A child never returns to pytest: whatever happens to it, it sends one answer (its verdict, or the exception that
ended it) and the API calls its functions made after the fork (tests/template/api_calls.py, which the least-privilege
tests read), then ends with ``os._exit``. A child that does not answer in ``CHILD_SECONDS`` is killed and counted as
wrong.
"""

from __future__ import annotations

import gc
import os
import pickle
import select
import signal
import time
import traceback
from collections.abc import Callable
from typing import Any

from tests.template import api_calls

CHILD_SECONDS = 120.0


class Forked:
    """What a child answered: ``verdict`` (what the scenario returned), or ``error`` (the exception that ended it)."""

    def __init__(self, verdict: Any = None, error: str | None = None):
        self.verdict, self.error = verdict, error

    def __repr__(self) -> str:
        return f"Forked(error={self.error!r})" if self.error else f"Forked({self.verdict!r})"


class ForkPoints:
    """A watcher of the functions' calls (api_calls.watchers) that forks before each call of ``points`` (1-based
    numbers of the calls, in the order made). ``fault(call)`` is what the child then does at that call, as a
    test's fault would; ``answers`` holds each point's ``Forked``."""

    def __init__(self, points: list[int], fault: Callable[[int, dict[str, Any]], None]):
        self.points = set(points)
        self._fault = fault
        self.calls = 0
        self.answers: dict[int, Forked] = {}
        self._pipe: int | None = None  # set in a child: where its answer goes
        self._recorded = 0  # api_calls._calls made before the fork (the parent has them)

    @property
    def in_child(self) -> bool:
        return self._pipe is not None

    def before(self, call: dict[str, Any]) -> None:
        self.calls += 1
        if self.calls not in self.points or self.in_child:
            return
        read, write = os.pipe()
        self._recorded = len(api_calls._calls)  # this call is recorded already, in the parent as in the child
        # the child's garbage collector leaves the objects made before the fork alone: walking them would write to,
        # and so copy, every page of the parent's heap (over a gigabyte here)
        gc.freeze()
        pid = os.fork()
        if pid:
            gc.unfreeze()
        else:
            os.close(read)
            self._pipe = write
            self._fault(self.calls, call)
            return
        os.close(write)
        self.answers[self.calls] = self._wait(pid, read)

    def after(self, call: dict[str, Any], response: Any) -> None:
        """Watchers are told of answers too; a fork point needs none."""

    def answer(self, verdict: Any = None, error: BaseException | None = None) -> None:
        """In a child: send the verdict (or the error) and the calls made since the fork, and end the process."""
        assert self._pipe is not None
        status = 0
        try:
            message = Forked(verdict, "".join(traceback.format_exception(error)) if error else None)
            payload = pickle.dumps((message, api_calls._calls[self._recorded:]))
            with os.fdopen(self._pipe, "wb") as pipe:
                pipe.write(payload)
        except BaseException:  # noqa: BLE001 - a child must end here whatever failed
            traceback.print_exc()
            status = 1
        finally:
            os._exit(status)

    def _wait(self, pid: int, read: int) -> Forked:
        chunks, deadline, answered = [], time.monotonic() + CHILD_SECONDS, False
        try:
            while (left := deadline - time.monotonic()) > 0 and select.select([read], [], [], left)[0]:
                chunk = os.read(read, 1 << 20)
                if not chunk:
                    answered = True
                    break
                chunks.append(chunk)
        finally:
            os.close(read)
        if not answered:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        try:
            message, calls = pickle.loads(b"".join(chunks))
        except Exception:  # noqa: BLE001 - no answer, or half of one
            waited = "" if answered else f" in {CHILD_SECONDS:.0f} s"
            return Forked(error=f"the child forked at call {self.calls} gave no answer{waited} (wait status {status})")
        api_calls._calls.extend(calls)
        return message


def sweep(points: list[int], fault: Callable[[int, dict[str, Any]], None],
          scenario: Callable[[ForkPoints], Any]) -> dict[int, Forked]:
    """``scenario(forks)`` once, with ``forks`` watching its calls (the scenario installs it as a watcher): at each of
    ``points`` a child takes ``fault`` and returns what the scenario returns to its parent. Returns each point's
    answer; a point the run never reached is answered with an error."""
    forks = ForkPoints(points, fault)
    try:
        verdict = scenario(forks)
    except BaseException as error:
        if forks.in_child:
            forks.answer(error=error)
        raise
    if forks.in_child:
        forks.answer(verdict)
    forks.points.clear()  # still a watcher until the test ends: it forks no more
    missing = {point: Forked(error=f"the run made {forks.calls} calls: never reached") for point in points
               if point not in forks.answers}
    return {**forks.answers, **missing}
