"""bench/learning_curve.py: nested stratified parts of the training rows, trained with the budget's own settings."""

from __future__ import annotations

import pandas as pd
import pytest
import train

from bench.learning_curve import hyperparameters, nested_parts
from reviewtune.budget import Budget


def _rows(per_class: dict[int, int]) -> pd.DataFrame:
    rows = [(label, f"review {label} {index}") for label, count in per_class.items() for index in range(count)]
    return pd.DataFrame(rows, columns=["sentiment", "review_body"])


def test_each_part_keeps_its_share_of_every_class_and_holds_the_smaller_parts() -> None:
    train_rows = _rows({-1: 40, 0: 41, 1: 43})
    parts = nested_parts(train_rows, [1.0, 0.25, 0.5])
    assert list(parts) == [0.25, 0.5, 1.0]
    assert parts[0.25]["sentiment"].value_counts().to_dict() == {-1: 10, 0: 10, 1: 10}
    assert parts[0.5]["sentiment"].value_counts().to_dict() == {-1: 20, 0: 20, 1: 21}
    assert len(parts[1.0]) == len(train_rows)
    smaller, larger = set(parts[0.25]["review_body"]), set(parts[0.5]["review_body"])
    assert smaller < larger < set(parts[1.0]["review_body"]) == set(train_rows["review_body"])


@pytest.mark.parametrize("fraction", [0.0, 1.5, -0.1])
def test_a_share_outside_zero_to_one_is_refused(fraction: float) -> None:
    with pytest.raises(ValueError, match="fractions must be in"):
        nested_parts(_rows({-1: 4, 0: 4, 1: 4}), [0.5, fraction])


def test_the_jobs_train_with_the_budget_s_settings_as_train_py_reads_them(capsys) -> None:
    budget = Budget()
    args = train.parse_args(hyperparameters(budget, 1e-4, "/models/mpnet"))
    assert "unknown arguments" not in capsys.readouterr().out
    assert args.model_name_or_path == "/models/mpnet"
    assert args.learning_rate == 1e-4
    assert (args.epochs, args.max_seq_length) == (budget.epochs, budget.max_seq_length)
    assert args.train_batch_size == budget.static["train_batch_size"]
    assert args.freeze_bert_layer == budget.static["freeze_bert_layer"]
    assert args.frozen_cache_mb == budget.static["frozen_cache_mb"]
    assert args.pooling == budget.static["pooling"]
    assert args.attention_dropout == budget.static["attention_dropout"]
