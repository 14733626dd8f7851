"""Variants of dropped files for tests."""

from __future__ import annotations


def with_extra_column(body: bytes, name: str = "note", value: str = "re-exported") -> bytes:
    """The same rows of a simple TSV (no quoted line breaks) with one more column: other bytes, the same splits."""
    lines = body.decode("utf-8").splitlines()
    rows = [f"{lines[0]}\t{name}", *(f"{line}\t{value}" for line in lines[1:])]
    return ("\n".join(rows) + "\n").encode("utf-8")
