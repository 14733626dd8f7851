"""Move job inputs and outputs between S3 and a job folder, the way SageMaker's containers see them."""

from __future__ import annotations

import tarfile
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/key`` -> ``("bucket", "some/key")``."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"not an s3:// URI: {uri!r}")
    return parsed.netloc, parsed.path.lstrip("/")


def _relative_key(key: str, prefix: str) -> str:
    """Where an object listed under ``prefix`` lands inside the destination folder."""
    if key == prefix:
        return PurePosixPath(key).name
    if prefix == "" or prefix.endswith("/"):
        return key[len(prefix) :]
    if key.startswith(prefix + "/"):
        return key[len(prefix) + 1 :]
    # A prefix that ends inside a name ("data/tr" matching "data/train/x"): keep the path after its folder.
    return key[prefix.rfind("/") + 1 :]


def download_prefix(s3: Any, uri: str, destination: Path) -> list[Path]:
    """Download every object whose key starts with the URI's key (S3Prefix semantics) into ``destination``.

    Returns the files written; raises FileNotFoundError when nothing matches, ValueError for a key that would be
    written outside ``destination``.
    """
    bucket, prefix = parse_s3_uri(uri)
    destination.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            key = item["Key"]
            relative = _relative_key(key, prefix)
            if not relative or key.endswith("/"):
                continue
            parts = PurePosixPath(relative).parts
            if relative.startswith("/") or ".." in parts:
                # S3 keys are names, not paths: such a one would be written outside the job's folder
                raise ValueError(f"the key {key!r} names no file under the input's folder ('..' or a leading '/')")
            target = destination.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, key, str(target))
            written.append(target)
    if not written:
        raise FileNotFoundError(f"no S3 object found under {uri}")
    return written


def upload_folder(s3: Any, source: Path, uri: str) -> list[str]:
    """Upload every file under ``source`` to ``uri``/<relative path>; returns the keys written."""
    bucket, prefix = parse_s3_uri(uri)
    prefix = prefix.rstrip("/")
    keys: list[str] = []
    if not source.is_dir():
        return keys
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        relative = path.relative_to(source).as_posix()
        key = f"{prefix}/{relative}" if prefix else relative
        s3.upload_file(str(path), bucket, key)
        keys.append(key)
    return keys


def download_and_extract(s3: Any, uri: str, destination: Path) -> None:
    """Download a ``.tar.gz`` (a SageMaker source directory) and extract it into ``destination``."""
    bucket, key = parse_s3_uri(uri)
    destination.mkdir(parents=True, exist_ok=True)
    archive = destination.parent / f".{destination.name}.tar.gz"
    s3.download_file(bucket, key, str(archive))
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(destination, filter="data")
    finally:
        archive.unlink(missing_ok=True)


# A model's weights barely compress (float bytes: gzip's default level keeps 91-92 %) while gzip took, each trial on
# a 2-core machine, 3.7 s for MiniLM's 88 MB and 15.6 s for all-mpnet-base-v2's 438 MB: the archive is a gzip that
# stores its bytes (level 0: 0.2 s and 0.8 s), which every reader of a .tar.gz opens alike.
GZIP_LEVEL = 0


def tar_folder(source: Path, archive: Path) -> Path:
    """Write ``source``'s content (not the folder itself) into a gzip tar, as SageMaker packs model.tar.gz."""
    with tarfile.open(archive, "w:gz", compresslevel=GZIP_LEVEL) as tar:
        for path in sorted(source.iterdir()) if source.is_dir() else []:
            tar.add(path, arcname=path.name)
    return archive
