"""Deciding a challenger alone, for the tests of the champion's decision rules."""

from __future__ import annotations

from typing import Any

from reviewtune.core.champion import (
    DEFAULT_MARGIN_POINTS,
    DEFAULT_MAX_P_VALUE,
    TRIES,
    ChampionChanged,
    Comparison,
    Outcome,
    plan_challenge,
    set_champion,
)


def challenge(
    table: Any,
    dataset: str,
    *,
    run_id: str,
    accuracy: float,
    test_rows: int,
    test_split: str,
    comparison: Comparison | None,
    margin_points: float = DEFAULT_MARGIN_POINTS,
    model_package_arn: str | None = None,
    not_measured: str | None = None,
    max_p_value: float = DEFAULT_MAX_P_VALUE,
) -> Outcome:
    """``plan_challenge``, then the pointer's move when the challenger wins (what record_results does, without the
    run's own final write). A concurrent change of the pointer is read again and decided again; after TRIES
    changes, ChampionChanged."""
    for _ in range(TRIES):
        plan = plan_challenge(
            table, dataset, run_id=run_id, accuracy=accuracy, test_rows=test_rows, comparison=comparison,
            margin_points=margin_points, not_measured=not_measured, max_p_value=max_p_value,
        )
        if not plan.moves:
            return plan.outcome
        try:
            set_champion(
                table,
                dataset,
                run_id=run_id,
                accuracy=accuracy,
                test_rows=test_rows,
                test_split=test_split,
                why=plan.reason,
                expected_run_id=plan.expected_run_id,
                model_package_arn=model_package_arn,
            )
        except ChampionChanged:
            continue  # someone changed the pointer meanwhile: read again, decide again
        return plan.outcome
    raise ChampionChanged(f"the champion of {dataset!r} kept changing; decide by hand")
