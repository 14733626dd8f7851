"""bench/course_split.py: the reference's kind of split of the raw CSV, and the reviews no such split can draw."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.common import data_dir
from bench.course_split import RAW_FILE, course_split, main, never_drawn, read_raw


def _raw(rows: int = 600, seed: int = 5) -> pd.DataFrame:
    """A raw-CSV-like frame: ratings skewed to 5 as in the real file, some titles, texts and categories missing."""
    rng = random.Random(seed)
    ratings = rng.choices([1, 2, 3, 4, 5], weights=[4, 7, 12, 22, 55], k=rows)
    return pd.DataFrame(
        {
            "Clothing ID": range(rows),
            "Title": [None if rng.random() < 0.15 else f"title {i}" for i in range(rows)],
            "Review Text": [None if rng.random() < 0.04 else f"review\t{i}\nline two" for i in range(rows)],
            "Rating": ratings,
            "Class Name": [None if rng.random() < 0.01 else "Dresses" for _ in range(rows)],
        }
    ).assign(sentiment=lambda f: f["Rating"].map(lambda r: -1 if r <= 2 else (0 if r == 3 else 1)))


def test_the_split_draws_complete_rows_balanced_and_90_5_5() -> None:
    raw = _raw()
    split = course_split(raw, seed=1)
    complete = raw.dropna()
    smallest = complete["sentiment"].value_counts().min()
    assert len(split) == 3 * smallest
    assert set(split.index) <= set(complete.index)
    assert not split.index.duplicated().any()
    assert split["sentiment"].value_counts().tolist() == [smallest] * 3
    sizes = split["split"].value_counts()
    assert sizes["validation"] + sizes["test"] == pytest.approx(0.10 * len(split), abs=1)
    assert abs(sizes["validation"] - sizes["test"]) <= 1
    for part in ("validation", "test"):
        counts = split[split["split"] == part]["sentiment"].value_counts()
        assert counts.max() - counts.min() <= 1, (part, counts)  # stratified
    assert not split["review_body"].str.contains(r"[\t\r\n]").any()
    assert list(split.columns) == ["sentiment", "review_body", "split"]


def test_the_seed_changes_the_split_and_repeats_it() -> None:
    raw = _raw()
    assert course_split(raw, seed=1).equals(course_split(raw, seed=1))
    assert not course_split(raw, seed=1).index.equals(course_split(raw, seed=2).index)


def test_never_drawn_rows_have_a_text_miss_something_else_and_no_seed_draws_them() -> None:
    raw = _raw()
    held_out = never_drawn(raw)
    assert raw.loc[held_out.index, "Review Text"].notna().all()
    assert raw.loc[held_out.index].drop(columns=["Review Text"]).isna().any(axis=1).all()
    counts = held_out["sentiment"].value_counts()
    assert counts.nunique() == 1 and counts.iloc[0] > 0
    for seed in range(5):
        assert not set(held_out.index) & set(course_split(raw, seed).index)


def test_the_command_writes_both_files_that_the_pipeline_reads(tmp_path: Path) -> None:
    raw_path = tmp_path / "raw.csv"
    _raw().to_csv(raw_path)
    assert main(["--seed", "3", "--raw", str(raw_path), "--out", str(tmp_path / "s.tsv"), "--held-out", str(tmp_path / "h" / "h.tsv")]) == 0
    split = pd.read_csv(tmp_path / "s.tsv", sep="\t")
    assert set(split["split"]) == {"train", "validation", "test"}
    assert split["sentiment"].isin([-1, 0, 1]).all()
    held_out = pd.read_csv(tmp_path / "h" / "h.tsv", sep="\t")
    assert list(held_out.columns) == ["sentiment", "review_body"]


def test_a_missing_raw_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--seed", "1", "--raw", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "s.tsv")])
    assert "nope.csv not found" in capsys.readouterr().err


@pytest.mark.skipif(not (data_dir() / RAW_FILE).is_file(), reason="the raw Kaggle CSV is not in the data folder")
def test_on_the_real_file_the_sizes_are_the_reference_s() -> None:
    raw = read_raw(data_dir() / RAW_FILE)
    split = course_split(raw, seed=1)
    assert split["split"].value_counts().to_dict() == {"train": 5537, "validation": 308, "test": 308}
    held_out = never_drawn(raw)
    assert held_out["sentiment"].value_counts().to_dict() == {-1: 319, 0: 319, 1: 319}
    assert not set(held_out.index) & set(split.index)
    assert np.isin(held_out["sentiment"], [-1, 0, 1]).all()
