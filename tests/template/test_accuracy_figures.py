"""The README's accuracy summary is what docs/accuracy.md's table of tuned runs adds up to."""

from __future__ import annotations

import re
from statistics import mean

from tests.template.helpers import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
ACCURACY = (ROOT / "docs" / "accuracy.md").read_text(encoding="utf-8")
BUDGET_NOW = "(the budget now)"


def tuned_runs() -> list[dict[str, str]]:
    """The rows of docs/accuracy.md's table of tuned runs, by column name."""
    lines = ACCURACY.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| seed | budget |"))
    header = [cell.strip() for cell in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")), strict=True)))
    return rows


def _summary() -> str:
    start = README.index("**How accurate, and why this budget.**")
    return README[start:README.index("(docs/accuracy.md).", start)]


def _test(row: dict[str, str]) -> float:
    return float(row["test, % (308 rows)"])


def test_the_table_holds_one_row_per_seed_with_figures_in_range():
    runs = tuned_runs()
    seeds = [int(row["seed"]) for row in runs]
    assert len(seeds) == len(set(seeds)) and len(runs) >= 17
    for row in runs:
        assert 0 < float(row["wall minutes"]) < 60
        assert 50 < float(row["validation, %"]) < 100 and 50 < _test(row) < 100


def test_the_readme_s_count_mean_range_and_share_above_74_are_the_table_s():
    runs = tuned_runs()
    tests = [_test(row) for row in runs]
    words = {17: "seventeen", 18: "eighteen", 19: "nineteen", 20: "twenty"}
    summary = _summary()
    assert f"{words[len(runs)]} tuned `make run DATA=...` runs" in summary
    assert f"**{mean(tests):.1f} % test accuracy on average**" in summary
    assert f"({min(tests):.2f} to {max(tests):.2f} %; {sum(t >= 74 for t in tests)} of {len(runs)} at or above 74 %)" in summary
    over_30 = [row for row in runs if float(row["wall minutes"]) > 30]
    assert f"all within 30\nminutes but {'one' if len(over_30) == 1 else len(over_30)}" in summary


def test_the_readme_s_held_out_figures_are_those_of_the_budget_now():
    now = [row for row in tuned_runs() if BUDGET_NOW in row["budget"]]
    held_out = [float(row["held-out, % (957 rows)"]) for row in now]
    said = re.search(r"scores\s+([\d. /]+) % on seeds ([\d /]+) \(mean\s+([\d.]+) %\)", _summary())
    assert said, "the README's summary no longer gives the held-out scores of the budget now"
    scores, seeds, average = said.groups()
    assert [float(value) for value in scores.split(" / ")] == held_out
    assert [int(value) for value in seeds.split(" / ")] == [int(row["seed"]) for row in now]
    assert float(average) == round(mean(held_out), 1)
