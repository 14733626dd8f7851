"""bench/bench_data.py: what `make bench` tunes on, and the held-out reviews its best models are scored on."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from bench import bench_data
from bench.bench_data import COURSE_SEED, HELD_OUT_NAME, best_model_dir, prepare
from bench.common import BALANCED_FILE, data_dir
from bench.course_split import RAW_FILE


@pytest.mark.skipif(not (data_dir() / RAW_FILE).is_file(), reason="the raw Kaggle CSV is not in the data folder")
def test_course_data_is_a_seeded_course_split_and_the_reviews_it_cannot_draw(tmp_path: Path) -> None:
    data = prepare("course", tmp_path)
    split = pd.read_csv(data.path, sep="\t")
    assert data.path.name == f"course_split_seed{COURSE_SEED}.tsv"
    assert split["split"].value_counts().to_dict() == {"train": 5537, "validation": 308, "test": 308}
    held = pd.read_csv(data.held_out / HELD_OUT_NAME, sep="\t")
    assert len(held) == 957 and list(held.columns) == ["sentiment", "review_body"]
    assert not set(held["review_body"]) & set(split["review_body"])
    assert f"seed {COURSE_SEED}: 5,537 / 308 / 308 rows" in data.description and "957 reviews" in data.description
    again = prepare("course", tmp_path / "again")
    assert again.path.read_bytes() == data.path.read_bytes()  # the same split each time


def test_missing_files_and_unknown_kinds_are_clear_errors(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("REVIEWTUNE_DATA_DIR", str(tmp_path / "empty"))
    with pytest.raises(SystemExit, match=f"{RAW_FILE} not found"):
        prepare("course", tmp_path)
    with pytest.raises(SystemExit, match=f"{BALANCED_FILE} not found"):
        prepare("balanced", tmp_path)
    with pytest.raises(ValueError, match="one of course, balanced"):
        prepare("raw", tmp_path)


def test_balanced_data_has_no_held_out_set(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / BALANCED_FILE).write_text("sentiment,review_body,product_category\n1,good,Dresses\n")
    monkeypatch.setenv("REVIEWTUNE_DATA_DIR", str(tmp_path))
    data = prepare("balanced", tmp_path / "out")
    assert data.path == tmp_path / BALANCED_FILE and data.held_out is None


def test_the_best_trial_s_model_folder(tmp_path: Path) -> None:
    run = {"tuning": {"best_training_job": {"name": "job-002"}}}
    with pytest.raises(FileNotFoundError, match="job-002/model"):
        best_model_dir(tmp_path, run)
    (tmp_path / "sagemaker" / "training" / "job-002" / "model").mkdir(parents=True)
    assert best_model_dir(tmp_path, run) == tmp_path / "sagemaker" / "training" / "job-002" / "model"
    assert bench_data.REPO.joinpath("training_code", "evaluate_model_metrics.py").is_file()
