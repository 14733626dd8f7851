"""argparse types for the CLI's numbers: a bad value is refused by argparse, which names the option, before anything
runs (never a traceback, a division by zero, or a negative number taken for "all")."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path


def count(unit: str, minimum: int = 1) -> Callable[[str], int]:
    """A whole number of ``unit``, at least ``minimum``."""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number of {unit}, got {value!r}") from None
        if number < minimum:
            raise argparse.ArgumentTypeError(f"expected {minimum} or more {unit}, got {value!r}")
        return number

    return parse


# The longest span a command takes, in days: a window reaching back before any run (S3 and DynamoDB keep nothing older
# than the stack), and far inside what datetime arithmetic can hold (``now - timedelta(days=1e6)`` overflows).
MAX_SPAN_DAYS = 36_500
_UNIT_DAYS = {"days": 1.0, "minutes": 1 / (24 * 60), "seconds": 1 / (24 * 3600)}


def span(unit: str, *, positive: bool = False) -> Callable[[str], float]:
    """A finite number of ``unit`` (days, minutes or seconds): zero or more, or more than zero when ``positive``, and
    at most ``MAX_SPAN_DAYS`` days."""
    most = MAX_SPAN_DAYS / _UNIT_DAYS[unit]

    def parse(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number of {unit}, got {value!r}") from None
        if not math.isfinite(number) or number < 0 or (positive and number == 0):
            more = "more than zero" if positive else "zero or more"
            raise argparse.ArgumentTypeError(f"expected {more} {unit}, got {value!r}")
        if number > most:
            days = "" if unit == "days" else f" ({MAX_SPAN_DAYS:,} days)"
            raise argparse.ArgumentTypeError(f"expected at most {most:,.0f} {unit}{days}, got {value!r}")
        return number

    return parse


def dataset(value: str) -> str:
    """A dataset, or a folder of them: a path below incoming/ (``team-a/reviews.tsv``, ``team-a``), the slashes at
    either end left out; never empty, and without empty, ``.`` or ``..`` parts, which S3 would keep as they are and
    make another dataset of."""
    name = value.strip("/")
    if not name.strip() or any(part in ("", ".", "..") for part in name.split("/")):
        raise argparse.ArgumentTypeError(
            f"expected a path below incoming/ such as 'team-a/reviews.tsv' or 'team-a', got {value!r}")
    return name


def not_a_file(path: Path) -> str:
    """Why ``path``, which is not a file, cannot be read as one."""
    return "a folder, not a file" if path.is_dir() else "no such file"
