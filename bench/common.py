"""Shared benchmark helpers: the real balanced review data and its fixed, stratified 90/5/5 split."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

REPO_ROOT = Path(__file__).resolve().parent.parent
BALANCED_FILE = "womens_clothing_ecommerce_reviews_balanced.csv"
SPLIT_SEED = 20240601
SPLITS: tuple[str, ...] = ("train", "validation", "test")
_SPACES = str.maketrans({"\t": " ", "\r": " ", "\n": " "})


def data_dir() -> Path:
    """``REVIEWTUNE_DATA_DIR``, else ``../shared/data`` next to the repository."""
    return Path(os.environ.get("REVIEWTUNE_DATA_DIR") or REPO_ROOT.parent / "shared" / "data")


def load_balanced_reviews(folder: Path | None = None) -> pd.DataFrame:
    """The balanced review file as a frame with the columns ``sentiment`` (int) and ``review_body`` (str)."""
    path = (folder or data_dir()) / BALANCED_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found; set REVIEWTUNE_DATA_DIR to the folder holding {BALANCED_FILE}"
        )
    frame = pd.read_csv(path, usecols=["sentiment", "review_body"])
    frame = frame.dropna(subset=["sentiment", "review_body"])
    frame["sentiment"] = frame["sentiment"].astype(int)
    frame["review_body"] = frame["review_body"].astype(str)
    return frame.reset_index(drop=True)


@dataclass(frozen=True)
class ReviewSplit:
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame

    def sizes(self) -> dict[str, int]:
        return {name: len(getattr(self, name)) for name in SPLITS}


def split_reviews(
    frame: pd.DataFrame,
    validation_fraction: float = 0.05,
    test_fraction: float = 0.05,
    seed: int = SPLIT_SEED,
) -> ReviewSplit:
    """Stratified train / validation / test split, reproducible for a given seed."""
    train, holdout = train_test_split(
        frame, test_size=validation_fraction + test_fraction, stratify=frame["sentiment"], random_state=seed
    )
    validation, test = train_test_split(
        holdout,
        test_size=test_fraction / (validation_fraction + test_fraction),
        stratify=holdout["sentiment"],
        random_state=seed,
    )
    return ReviewSplit(*(part.reset_index(drop=True) for part in (train, validation, test)))


def write_tsv(frame: pd.DataFrame, path: Path) -> Path:
    """Write ``sentiment<TAB>review_body`` the way the pipeline writes its split files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["sentiment", "review_body"])
        for sentiment, text in zip(frame["sentiment"], frame["review_body"], strict=True):
            writer.writerow([int(sentiment), str(text).translate(_SPACES)])
    return path


def write_split(split: ReviewSplit, folder: Path) -> dict[str, Path]:
    """``folder/<split>/<split>.tsv`` for each split; returns the split folders (SageMaker channel folders)."""
    folders = {}
    for name in SPLITS:
        write_tsv(getattr(split, name), folder / name / f"{name}.tsv")
        folders[name] = folder / name
    return folders


def default_split_folders(folder: Path) -> dict[str, Path]:
    """Load the balanced data, split it with the fixed seed and write the channel folders under ``folder``."""
    return write_split(split_reviews(load_balanced_reviews()), folder)
