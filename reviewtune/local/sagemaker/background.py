"""The thread every local job runs in: publish the first state, then run the job in the background."""

from __future__ import annotations

import threading


class BackgroundJob:
    """Mixin for jobs with ``name``, ``_publish()`` and ``_run()``; Create*Job returns while the job runs on."""

    kind = "job"
    _thread: threading.Thread | None = None

    def _publish(self) -> None:  # pragma: no cover - every job defines it
        raise NotImplementedError

    def _run(self) -> None:  # pragma: no cover - every job defines it
        raise NotImplementedError

    def start(self) -> None:
        self._publish()
        self._thread = threading.Thread(target=self._run, name=f"{self.kind}-{self.name}", daemon=True)
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
