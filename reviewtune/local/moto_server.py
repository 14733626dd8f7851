"""A moto server (S3, DynamoDB, SNS, SQS, EventBridge, CloudFormation, IAM, ...) on 127.0.0.1 in this process."""

from __future__ import annotations

import copy
import functools
import logging
import threading
import types
import urllib.parse
import urllib.request
import warnings
from typing import Any

from moto.server import ThreadedMotoServer

logger = logging.getLogger(__name__)


class _UnsupportedResourceFilter(logging.Filter):
    """Drops moto's per-request "No Moto CloudFormation support" lines; the stack module reports them once."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("No Moto CloudFormation support")


def _quiet_moto_logs() -> None:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    moto_logger = logging.getLogger("moto")
    if not any(isinstance(item, _UnsupportedResourceFilter) for item in moto_logger.filters):
        moto_logger.addFilter(_UnsupportedResourceFilter())
    warnings.filterwarnings("ignore", message="Tried to parse .* not supported by moto", category=UserWarning)


_DYNAMODB_REQUESTS = threading.RLock()


def _serialize_dynamodb_requests() -> None:
    """Answer one DynamoDB request at a time, as DynamoDB applies the writes to an item one after the other.

    The server answers each request on its own thread, and moto checks a ConditionExpression and then writes in two
    steps: two conditional updates of one item at once could both pass their check (two runs taking the last
    slot), and two updates creating the same item could each start from nothing (one run's slot lost). The
    handlers' guarantees rely on DynamoDB's order, so the local runtime serializes its DynamoDB requests.
    """
    from moto.dynamodb.responses import DynamoHandler

    original = DynamoHandler.call_action
    if getattr(original, "serialized", False):
        return

    @functools.wraps(original)
    def call_action(self: DynamoHandler) -> Any:
        with _DYNAMODB_REQUESTS:
            return original(self)

    call_action.serialized = True  # type: ignore[attr-defined]
    DynamoHandler.call_action = call_action


def _list_versions_without_copying_bytes() -> None:
    """ListObjectVersions without a copy of every object's bytes.

    moto (5.2) answers each ListObjectVersions by deep-copying every version of every key in the bucket, whatever
    the prefix, to mark the copies latest or not; each copy writes the object's bytes to a new temporary file (a
    model.tar.gz of all-mpnet-base-v2 is 400 MB), freed only when the garbage collector gets to it. The local
    reconciler lists ``incoming/`` every pass, and a long ``local up`` with a few trained models filled the disk
    with such files. Here a listed version is a view of the stored key: its attributes, the same bytes, and no
    file of its own to close.
    """
    from moto.s3 import models

    if getattr(models.copy, "listing_views", False):
        return

    class _ListedKey(models.FakeKey):
        """A listed version: shares the stored key's buffer, so it must never close it."""

        def dispose(self, garbage: bool = False) -> None:
            pass

        def __del__(self) -> None:
            pass

    def view(version: Any) -> Any:
        # a delete marker holds the key it hides, bytes and all: it is viewed too, never deep-copied
        listed = object.__new__(_ListedKey if isinstance(version, models.FakeKey) else type(version))
        listed.__dict__.update(version.__dict__)
        return listed

    def deepcopy(value: Any, memo: Any = None) -> Any:
        if isinstance(value, list):  # the versions of one key, the only deep copy the module makes
            return [view(item) for item in value]
        return copy.deepcopy(value, memo)

    models.copy = types.SimpleNamespace(copy=copy.copy, deepcopy=deepcopy, listing_views=True)


# The elements of a ListObjectVersions answer S3 URL-encodes when asked (``encoding-type=url``), and botocore decodes.
_ENCODED_TOP = ("Prefix", "KeyMarker", "NextKeyMarker", "Delimiter")
_ENCODED_NESTED = (("Versions", "Key"), ("DeleteMarkers", "Key"), ("CommonPrefixes", "Prefix"))


def _list_versions_url_encoded() -> None:
    """ListObjectVersions answers with its keys URL-encoded when asked (``encoding-type=url``), as S3 does.

    botocore always asks, and decodes the answer. moto (5.2) ignores the parameter for this operation and writes each
    key as it is into the XML answer, so one key holding a character XML 1.0 cannot carry (ESC, a form feed: S3
    accepts any character in a key) made every listing of its prefix answer 500: locally the reconciler's sweep of
    incoming/, ``audit``, ``overview`` and ``runs list FOLDER`` failed until the file was deleted.
    """
    from moto.s3.responses import S3Response

    original = S3Response.list_object_versions
    if getattr(original, "url_encoded", False):
        return

    def encode(result: dict[str, Any]) -> None:
        for name in _ENCODED_TOP:
            if result.get(name):
                result[name] = urllib.parse.quote(result[name])
        for group, name in _ENCODED_NESTED:
            for entry in result.get(group) or ():
                entry[name] = urllib.parse.quote(entry[name])
        result["EncodingType"] = "url"

    @functools.wraps(original)
    def list_object_versions(self: S3Response) -> Any:
        if self.querystring.get("encoding-type", [None])[0] != "url":
            return original(self)
        serialized = self.serialized

        def serialized_encoded(action_result: Any) -> Any:
            encode(action_result.result)
            return serialized(action_result)

        self.serialized = serialized_encoded  # type: ignore[method-assign]  # this request's answer only
        try:
            return original(self)
        finally:
            del self.serialized

    list_object_versions.url_encoded = True  # type: ignore[attr-defined]
    S3Response.list_object_versions = list_object_versions


def _route_keys_with_line_breaks() -> None:
    """A key holding a line break (S3 takes any character in a key) reaches its object.

    moto's server routes S3's object requests by regular expressions whose ``.+`` stops at a line break, so a PUT, GET
    or HEAD of ``incoming/a\nb.tsv`` answered a bare 404: locally such a file could not be dropped, nor a run read
    it. Its routes' ``.`` take a line break too: a path without one is routed as before.
    """
    from moto.moto_server import utilities
    from werkzeug.routing import BaseConverter

    converter = utilities.RegexConverter
    if getattr(converter.__init__, "line_breaks", False):
        return

    def __init__(self: Any, url_map: Any, *items: Any) -> None:
        BaseConverter.__init__(self, url_map)
        self.regex = items[0].replace(".+", r"[\s\S]+").replace(".*", r"[\s\S]*")

    __init__.line_breaks = True  # type: ignore[attr-defined]
    converter.__init__ = __init__  # type: ignore[method-assign]


class MotoServer:
    """Starts moto's threaded server on a free port; its state is reset on start and on stop."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        self._port = port
        self._server: ThreadedMotoServer | None = None
        self.url: str | None = None

    def start(self) -> str:
        """Start the server and return its URL (``http://127.0.0.1:<port>``)."""
        if self._server is not None:
            raise RuntimeError(f"moto server already running at {self.url}")
        _quiet_moto_logs()
        _serialize_dynamodb_requests()
        _list_versions_without_copying_bytes()
        _list_versions_url_encoded()
        _route_keys_with_line_breaks()
        server = ThreadedMotoServer(ip_address=self._host, port=self._port, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        self._server = server
        self.url = f"http://{host}:{port}"
        # moto keeps its backends in module globals: start from a clean account.
        self.reset()
        logger.info("moto server listening on %s", self.url)
        return self.url

    def reset(self) -> None:
        """Forget every resource the server holds."""
        if self.url is None:
            return
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()

    def stop(self) -> None:
        """Reset and stop the server; a second call does nothing."""
        server, self._server = self._server, None
        if server is None:
            return
        try:
            self.reset()
        except OSError as error:
            logger.warning("could not reset moto before stopping: %s", error)
        server.stop()
        # ThreadedMotoServer.stop() shuts the loop down but leaves the listening socket open.
        if server._server is not None:
            server._server.server_close()
        self.url = None

    def __enter__(self) -> MotoServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_moto_server(host: str = "127.0.0.1", port: int = 0) -> MotoServer:
    """Start a moto server; ``.url`` is its URL, ``.stop()`` stops it."""
    server = MotoServer(host, port)
    server.start()
    return server
