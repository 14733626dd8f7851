"""Hashes of review texts, to leave out of a comparison the test reviews a model was trained on.

The same normalisation and hash as ``reviewtune.core.train_hashes`` (which writes a run's ``train_hashes.txt``):
Unicode NFKC, case-folded, every run of whitespace one space, no leading or trailing space, then SHA-256 (hex).
This module is the processing container's copy (the container has training_code/ only); a test keeps the two
equal. Standard library only.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import Path

HASHES_FILE = "train_hashes.txt"
HASH_PATTERN = re.compile(r"^[0-9a-f]{64}$")
_SPACES = re.compile(r"\s+")


class HashesError(ValueError):
    """A hashes file is missing or holds a line that is not a SHA-256 hex digest."""


def normalize_text(text: str) -> str:
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def text_hash(text: str) -> str:
    return hashlib.sha256(normalize_text(text).encode("utf-8")).hexdigest()


def read_hashes(location: Path) -> set[str]:
    """The hashes in ``location``: a ``train_hashes.txt`` file, or a folder holding one (searched recursively)."""
    if location.is_dir():
        found = sorted(location.rglob(HASHES_FILE), key=lambda path: len(path.parts))
        if not found:
            raise HashesError(f"{location}: no {HASHES_FILE} in this folder")
        location = found[0]
    if not location.is_file():
        raise HashesError(f"{location}: no such file")
    hashes = set()
    for number, line in enumerate(location.read_text(encoding="ascii", errors="replace").splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        if not HASH_PATTERN.match(line):
            raise HashesError(f"{location} line {number}: {line[:80]!r} is not a SHA-256 hex digest")
        hashes.add(line)
    return hashes
