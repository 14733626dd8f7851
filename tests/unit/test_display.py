"""reviewtune.core.display: one way to write each number, time and name, in the messages, the CLI and the report."""

from __future__ import annotations

import ast
import math
import sys
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from reviewtune.core import code_bundle, display, page, report_decision

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("value", "kwargs", "text"),
    [
        (0.675213, {}, "67.52 %"),
        (Decimal("0.5"), {}, "50.00 %"),
        (73.0512, {"scale": 1}, "73.05 %"),
        (73, {"scale": 1}, "73.00 %"),
        (0.675213, {"suffix": False}, "67.52"),
        (None, {}, "n/a"),
        (math.nan, {"missing": "-"}, "-"),
        (True, {}, "n/a"),
    ],
)
def test_percent(value, kwargs, text):
    assert display.percent(value, **kwargs) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0 bytes"),
        (1023, "1,023 bytes"),
        (1024, "1 KiB"),
        (2**20 + 1, "1.0 MiB"),  # just over a limit of 1 MiB: the reasons give the exact bytes beside it
        (256 * 2**20, "256 MiB"),
        (300 * 2**20 + 5, "300 MiB"),
        (6 * 2**30, "6 GiB"),
        (5 * 2**30 + 1, "5.0 GiB"),
        (int(9.96 * 2**30), "10 GiB"),
        (3 * 2**50, "3,072 TiB"),
        (Decimal(1536), "1.5 KiB"),
        (-1, "n/a"),
        (None, "n/a"),
        (True, "n/a"),
    ],
)
def test_size(value, text):
    assert display.size(value) == text


@pytest.mark.parametrize(
    ("bounds", "text"),
    [
        ([0.557734, 0.786921], "95 % CI 55.77-78.69 %"),
        ((Decimal("0.3768"), Decimal("0.6232")), "95 % CI 37.68-62.32 %"),
        (None, ""),
        ([0.8, 0.6], ""),
        ([0.6], ""),
        ([-0.1, 1], ""),
        ([0.6, math.inf], ""),
    ],
)
def test_interval(bounds, text):
    assert display.interval(bounds) == text


@pytest.mark.parametrize(("value", "text"), [(93.4, "93 %"), (99.6, "99 %"), (Decimal("81.96"), "81 %"),
                                             ("0", "0 %"), (None, "n/a"), (math.nan, "n/a")])
def test_share_done_rounds_down(value, text):
    assert display.share_done(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("8.403604888695193e-05", "8.40e-05"),
        ("0.0001", "1.00e-04"),
        (0.1234, "0.123"),
        ('"128"', "128"),
        (128.0, "128"),
        ("adamw", "adamw"),
        ('"mean"', "mean"),
        (None, "n/a"),
    ],
)
def test_hyperparameter(value, text):
    assert display.hyperparameter(value) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s"), (41, "41 s"), (41.6, "42 s"), (120, "2 min"), (162, "2 min 42 s"), (3785, "1 h 3 min"),
     (7200, "2 h"), (-1, "n/a"), ("x", "n/a")],
)
def test_duration(seconds, text):
    assert display.duration(seconds) == text


def test_times_are_written_in_utc_to_the_second():
    assert display.utc_time("2025-03-01T10:15:00.123Z") == "2025-03-01 10:15:00 UTC"
    plus_one = datetime(2025, 3, 1, 11, 15, 2, tzinfo=timezone(timedelta(hours=1)))
    assert display.utc_time(plus_one) == "2025-03-01 10:15:02 UTC"
    assert display.utc_time("2025-03-01T11:15:02+01:00", suffix=False) == "2025-03-01 10:15:02"
    assert display.utc_time(datetime(2025, 3, 1, 10, 15)) == "2025-03-01 10:15:00 UTC"  # naive: taken as UTC
    assert display.utc_time(None) == "n/a" and display.utc_time("", missing="-") == "-"
    assert display.utc_time("not a time") == "not a time"
    assert display.moment("2025-03-01T10:15:00Z") == datetime(2025, 3, 1, 10, 15, tzinfo=UTC)


def test_scores_counts_points_money_and_trial_names():
    assert display.score(0.614973) == "0.615" and display.score("x") == "n/a"
    assert display.count(1234) == "1,234" and display.count(Decimal("17021")) == "17,021" and display.count(None) == "n/a"
    assert display.points(0.012213) == "+1.22 points" and display.points(-0.002) == "-0.20 points"
    assert display.money(1234.5, "USD") == "US$ 1,234.50" and display.money(0.0027, "USD") == "US$ 0.0027"
    assert display.money(0, "EUR") == "EUR 0.00" and display.money(None, "USD") == "unknown"
    assert display.trial_suffix("reviewtune-0720120411d7ae5c-001-1e7ae0c5") == "001-1e7ae0c5"
    assert display.trial_suffix("a-b-c") == "a-b-c" and display.trial_suffix("odd") == "odd"


@pytest.mark.parametrize("module", [display, page, report_decision], ids=lambda module: module.__name__)
def test_the_evaluation_job_gets_the_same_file_and_it_needs_nothing_but_the_standard_library(module):
    name = Path(module.__file__).name
    linked = ROOT / "training_code" / name
    assert linked.is_symlink() and linked.resolve() == Path(module.__file__).resolve()
    bundled = {path.name: path.read_bytes() for path in code_bundle._files(ROOT / "training_code")}
    assert bundled[name] == Path(module.__file__).read_bytes()
    tree = ast.parse(Path(module.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert imported and imported <= sys.stdlib_module_names | {"__future__"}
