"""Package training_code/ once per content hash and upload it under code/<sha256>/."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from reviewtune.core.names import code_prefix, s3_uri
from reviewtune.core.s3_presence import exists

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

ARCHIVE_NAME = "sourcedir.tar.gz"
SKIP_DIRS = {"__pycache__", ".pytest_cache"}
SKIP_SUFFIXES = (".pyc", ".pyo")


@dataclass(frozen=True)
class CodeBundle:
    digest: str
    archive_uri: str  # sagemaker_submit_directory of the training jobs
    source_uri: str  # prefix of the plain files, the processing job's code input


def default_code_dir() -> Path:
    """training_code/ next to the reviewtune package (in the repository and in the Lambda layer alike)."""
    override = os.environ.get("TRAINING_CODE_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parent.parent.parent / "training_code"


def _files(code_dir: Path) -> list[Path]:
    if not code_dir.is_dir():
        raise FileNotFoundError(f"training code folder {code_dir} does not exist")
    files = []
    for root, dirs, names in os.walk(code_dir):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        files.extend(Path(root) / n for n in sorted(names) if not n.endswith(SKIP_SUFFIXES))
    return sorted(files, key=lambda p: p.relative_to(code_dir).as_posix())


def digest_of(code_dir: Path) -> str:
    sha = hashlib.sha256()
    for path in _files(code_dir):
        sha.update(path.relative_to(code_dir).as_posix().encode() + b"\0")
        sha.update(path.read_bytes() + b"\0")
    return sha.hexdigest()


def archive(code_dir: Path) -> bytes:
    """A reproducible tar.gz of the folder (sorted entries, zero times), so equal content gives equal bytes."""
    import tarfile  # once per new training code, not on every cold start

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in _files(code_dir):
            data = path.read_bytes()
            info = tarfile.TarInfo(path.relative_to(code_dir).as_posix())
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def ensure_uploaded(s3: S3Client, bucket: str, code_dir: Path | None = None) -> CodeBundle:
    """Upload the code unless this exact content is already there; the archive is written last, as the marker."""
    code_dir = code_dir or default_code_dir()
    digest = digest_of(code_dir)
    prefix = code_prefix(digest)
    archive_key = prefix + ARCHIVE_NAME
    if not exists(s3, bucket, archive_key):
        for path in _files(code_dir):
            s3.put_object(
                Bucket=bucket,
                Key=f"{prefix}src/{path.relative_to(code_dir).as_posix()}",
                Body=path.read_bytes(),
            )
        s3.put_object(Bucket=bucket, Key=archive_key, Body=archive(code_dir), ContentType="application/gzip")
    return CodeBundle(digest, s3_uri(bucket, archive_key), s3_uri(bucket, prefix + "src/"))
