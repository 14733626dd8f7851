"""`make bench` scores each run's best model on the held-out reviews with the evaluation script itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.bench_data import HELD_OUT_NAME, score_held_out

from .conftest import TrainedModel, script_env, write_tsv
from .conftest import make_rows as make_review_rows


@pytest.mark.slow
def test_the_held_out_score_is_the_evaluation_script_s(trained_mean_model: TrainedModel, tmp_path: Path, monkeypatch) -> None:
    for name, value in script_env().items():
        monkeypatch.setenv(name, value)
    rows = make_review_rows(30, seed=11)
    write_tsv(tmp_path / "held-out" / HELD_OUT_NAME, rows)
    held = score_held_out(trained_mean_model.model_dir, tmp_path / "held-out", tmp_path / "out")
    assert held["rows"] == 30
    assert (tmp_path / "out" / "evaluation.json").is_file()
    assert set(held["recall"]) == {"-1", "0", "1"}
    # accuracy is the recall averaged over the balanced classes
    assert held["accuracy"] == pytest.approx(sum(held["recall"].values()) / 3, abs=2e-3)
