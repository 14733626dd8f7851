"""Hashes of the reviews a run trained on, so a later comparison can leave out what a model has already seen.

A review's hash is the SHA-256 (hex) of its normalized text: Unicode NFKC, case-folded, every run of
whitespace one space, no leading or trailing space. So "Great  dress!" and "great dress! " hash alike.
A run's hashes live in S3 at ``runs/<run_id>/data/train_hashes.txt``: one hash a line, sorted, no duplicates.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable
from typing import Any

from botocore.exceptions import ClientError

from reviewtune.core.names import RUNS_PREFIX

HASH_PATTERN = re.compile(r"^[0-9a-f]{64}$")
_SPACES = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def digest_of(normalized: str) -> bytes:
    """The SHA-256 of a text already normalized (``normalize_text``): its hash, as bytes."""
    return hashlib.sha256(normalized.encode("utf-8", "surrogatepass")).digest()


def text_hash(text: str) -> str:
    return digest_of(normalize_text(text)).hex()


def text_hashes(texts: Iterable[str]) -> set[str]:
    return {text_hash(text) for text in texts}


def train_hashes_key(run_id: str) -> str:
    return f"{RUNS_PREFIX}{run_id}/data/train_hashes.txt"


def write_train_hashes(s3: Any, bucket: str, run_id: str, digests: Iterable[bytes]) -> str:
    """Write the hashes of the texts whose ``digests`` (``digest_of``) are given, for ``run_id``; returns the object
    key. The digests sort as their hex forms do."""
    key = train_hashes_key(run_id)
    body = "".join(f"{digest.hex()}\n" for digest in sorted(set(digests)))
    s3.put_object(Bucket=bucket, Key=key, Body=body.encode("ascii"), ContentType="text/plain")
    return key


def read_train_hashes(s3: Any, bucket: str, run_id: str) -> set[str] | None:
    """The hashes written for ``run_id``; None when the run has none (an older run)."""
    key = train_hashes_key(run_id)
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("ascii")
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise
    hashes = set()
    for number, line in enumerate(body.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        if not HASH_PATTERN.match(line):
            raise ValueError(f"s3://{bucket}/{key} line {number}: {line[:80]!r} is not a SHA-256 hex digest")
        hashes.add(line)
    return hashes
