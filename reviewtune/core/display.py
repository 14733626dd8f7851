"""How numbers, times and names are written for people, the same in the SNS messages, the CLI and the HTML report.

Standard library only, and no import from reviewtune: the evaluation job writes the HTML report with this very file
(training_code/display.py links to it, and the code bundle carries the file). Nothing here raises: a value that is
missing, not a number or not finite is written as ``MISSING``.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

MISSING = "n/a"


def number(value: Any) -> float | None:
    """``value`` as a finite float, or None (booleans are not numbers; SageMaker's JSON-quoted values are)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip().strip('"')
    try:
        result = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return result if math.isfinite(result) else None


def percent(value: Any, *, scale: float = 100, suffix: bool = True, missing: str = MISSING) -> str:
    """An accuracy: 0.675213 -> ``67.52 %`` (two decimals, a space before %). ``scale=1`` for a value already in
    percent (the tuner's objective, validation:accuracy); ``suffix=False`` in a column whose header says %."""
    result = number(value)
    if result is None:
        return missing
    return f"{result * scale:.2f}" + (" %" if suffix else "")


def share_done(value: Any) -> str:
    """The share of a plan done, in whole percent rounded down (``93 %``): 99.6 % of the steps is not "100 %"."""
    share = number(value)
    return MISSING if share is None else f"{math.floor(share)} %"


def interval(bounds: Any) -> str:
    """evaluation.json's ``ci95`` ([0.557734, 0.786921]) -> ``95 % CI 55.77-78.69 %``; empty when absent or odd."""
    if not isinstance(bounds, list | tuple) or len(bounds) != 2:
        return ""
    low, high = (number(bound) for bound in bounds)
    if low is None or high is None or not 0 <= low <= high <= 1:
        return ""
    return f"95 % CI {percent(low, suffix=False)}-{percent(high)}"


def points(difference: Any) -> str:
    """A difference of accuracies (fractions) in percentage points, signed: 0.012213 -> ``+1.22 points``."""
    result = number(difference)
    return MISSING if result is None else f"{result * 100:+.2f} points"


def score(value: Any) -> str:
    """F1, precision, recall (0..1): 0.614973 -> ``0.615``."""
    result = number(value)
    return MISSING if result is None else f"{result:.3f}"


def count(value: Any) -> str:
    """Rows, reviews, trials, seconds: 1234 -> ``1,234``."""
    result = number(value)
    return MISSING if result is None else f"{int(result):,}"


_BINARY_UNITS = ("bytes", "KiB", "MiB", "GiB", "TiB")


def size(value: Any) -> str:
    """A size in bytes in the largest binary unit that keeps it at 1 or more: 268435456 -> ``256 MiB``,
    6442450944 -> ``6 GiB``, 5368709121 -> ``5.0 GiB``, 512 -> ``512 bytes`` (a whole number of the unit as it is,
    else one decimal under 10 of it and none above; a size just over a limit then reads as the limit, so reasons give
    the exact bytes beside it)."""
    result = number(value)
    if result is None or result < 0:
        return MISSING
    unit = 0
    while result >= 1024 and unit < len(_BINARY_UNITS) - 1:
        result /= 1024
        unit += 1
    if unit == 0:
        return f"{int(result):,} bytes"
    if result == int(result):
        return f"{int(result):,} {_BINARY_UNITS[unit]}"
    return f"{result:.1f} {_BINARY_UNITS[unit]}" if round(result, 1) < 10 else f"{result:,.0f} {_BINARY_UNITS[unit]}"


def hyperparameter(value: Any) -> str:
    """Three significant digits, scientific below 0.001: ``8.403604888695193e-05`` -> ``8.40e-05``, ``0.0001`` ->
    ``1.00e-04``, 0.1234 -> ``0.123``, ``"128"`` / 128.0 -> ``128``; text as it is (quotes dropped)."""
    result = number(value)
    if result is None:
        return MISSING if value is None else str(value).strip('"')
    if result.is_integer() and abs(result) < 1e15:
        return str(int(result))
    return f"{result:.2e}" if 0 < abs(result) < 1e-3 else f"{result:.3g}"


def duration(seconds: Any) -> str:
    """41 -> ``41 s``, 162 -> ``2 min 42 s``, 120 -> ``2 min``, 3785 -> ``1 h 3 min``, 7200 -> ``2 h`` (rounded to
    the second; seconds dropped from an hour on)."""
    result = number(seconds)
    if result is None or result < 0:
        return MISSING
    hours, rest = divmod(round(result), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h" + (f" {minutes} min" if minutes else "")
    if minutes:
        return f"{minutes} min" + (f" {secs} s" if secs else "")
    return f"{secs} s"


def moment(value: Any) -> datetime | None:
    """An ISO 8601 text (``Z`` or an offset) or a datetime as an aware datetime (a naive one is taken as UTC)."""
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def utc_time(value: Any, *, suffix: bool = True, missing: str = MISSING) -> str:
    """A moment in UTC to the second: ``2025-03-01 10:15:00 UTC``. ``suffix=False`` in a column whose header says
    (UTC). Text that is not a time comes back as it is (at most 40 characters)."""
    if value is None or value == "":
        return missing
    parsed = moment(value)
    if parsed is None:
        return str(value)[:40]
    return parsed.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") + (" UTC" if suffix else "")


def money(value: Any, currency: Any) -> str:
    """An estimated amount: ``US$ 1,234.50``, ``US$ 0.03``, ``US$ 0.0027`` (four decimals under a cent)."""
    amount = number(value)
    if amount is None:
        return "unknown"
    symbol = "US$ " if currency == "USD" else f"{str(currency)[:8]} "
    return f"{symbol}{amount:,.2f}" if amount >= 0.01 or amount == 0 else f"{symbol}{amount:.4f}"


def cost_total(cost: Any, evaluation: Any = None) -> float | None:
    """A run's estimated cost: its trials' (``tuning.cost``'s total) and its evaluation job's (``evaluation``:
    ``results.evaluation_cost``, where recorded); None where either is not priced (an instance type the price table
    lacks: never guessed) or the trials' total was not recorded."""
    total = number(cost.get("total")) if isinstance(cost, dict) else None
    evaluated = number(evaluation.get("cost")) if isinstance(evaluation, dict) else 0.0
    return None if total is None or evaluated is None else round(total + evaluated, 4)


def estimated_cost(cost: Any, evaluation: Any = None) -> str | None:
    """A run's ``tuning.cost`` (and its evaluation job's, ``results.evaluation_cost``) in one line: ``US$ 0.01
    (on-demand prices us-east-1 of 2026-11-30; an estimate)``; None where no total was recorded."""
    total = cost_total(cost, evaluation)
    if total is None:
        return None
    return (f"{money(total, cost.get('currency'))} (on-demand prices {cost.get('region', '?')} of "
            f"{cost.get('prices_as_of', '?')}; an estimate)")


def trial_suffix(job_name: Any) -> str:
    """``001-1e7ae0c5`` of ``<run id>-001-1e7ae0c5`` (SageMaker's names of a tuning job's training jobs); any other
    name whole."""
    name = str(job_name)
    parts = name.rsplit("-", 2)
    return "-".join(parts[1:]) if len(parts) == 3 and parts[1].isdigit() and parts[2] else name


# What start_tuning's cleaning left out of a file (its data summary's keys), as the message and the report say it.
CLEANING_STEPS = (
    ("dropped_empty_text", "empty texts dropped"),
    ("duplicates_removed", "duplicates removed"),
    ("conflicting_removed", "labelled two ways left out"),
    ("dropped_by_balancing", "dropped by balancing"),
    ("leakage_removed", "removed from validation/test as also in train (or test ones in validation)"),
)


def cleaning(summary: Any) -> str:
    """``empty texts dropped 0, duplicates removed 3, ...`` from a run's data summary; empty without one."""
    if not isinstance(summary, dict):
        return ""
    return ", ".join(f"{label} {count(summary[key])}" for key, label in CLEANING_STEPS if key in summary)
