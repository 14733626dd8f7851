"""The HTTP face of the service: AWS JSON 1.1 (``POST /`` with ``X-Amz-Target: SageMaker.<Operation>``)."""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

logger = logging.getLogger(__name__)

CONTENT_TYPE = "application/x-amz-json-1.1"

Dispatch = Callable[[str, bytes], tuple[int, dict[str, Any]]]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: JsonRpcServer

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, payload = self.server.dispatch(self.headers.get("X-Amz-Target", ""), body)
        self._send(status, payload)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        """``GET /`` answers ``{"status": "ok"}`` so a runtime can wait for the service."""
        self._send(200, {"status": "ok", "service": "sagemaker"})

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        logger.debug("%s %s", self.address_string(), format % args)


class JsonRpcServer(ThreadingHTTPServer):
    """A threaded HTTP server answering every POST with ``dispatch(target, body)``."""

    daemon_threads = True

    def __init__(self, host: str, port: int, dispatch: Dispatch) -> None:
        super().__init__((host, port), _Handler)
        self.dispatch = dispatch
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> str:
        self._thread = threading.Thread(
            target=self.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="local-sagemaker-http",
            daemon=True,
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
