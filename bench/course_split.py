"""Course-like splits of the raw Kaggle CSV, and the reviews no such split can draw (a wider held-out set).

    .venv/bin/python bench/course_split.py --seed 3 --out course_split_seed3.tsv [--held-out held_out.tsv]

The split is made as the reference's course made its own (``../shared/data/README.txt``): rows with a missing value
in any column dropped, each class downsampled to the smallest (2,051 per class), then 90 / 5 / 5 stratified, each
step seeded with ``--seed``: 5,537 train / 308 validation / 308 test rows, written as one TSV with a ``split``
column (``make run DATA=...`` reads it). The README's course-like figures are seeds 1 to 4.

``--held-out`` also writes the reviews that have a text but miss another column (mostly the title): no course-like
split can draw them, whatever its seed, so every seed's model can be scored on them. Balanced by class (319 each,
957 rows, seed 0). Score a model with the evaluation script:

    .venv/bin/python training_code/evaluate_model_metrics.py --input-model MODEL_DIR \\
        --input-data FOLDER_WITH_THE_TSV --output-data OUT_DIR
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import data_dir  # noqa: E402

RAW_FILE = "Womens_Clothing_E-Commerce_Reviews.csv"
HELD_OUT_SEED = 0


def read_raw(path: Path) -> pd.DataFrame:
    """The raw CSV with a ``sentiment`` column: rating 1-2 -> -1, 3 -> 0, 4-5 -> 1."""
    frame = pd.read_csv(path, index_col=0)
    return frame.assign(sentiment=frame["Rating"].map(lambda rating: -1 if rating <= 2 else (0 if rating == 3 else 1)))


def _reviews(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.rename(columns={"Review Text": "review_body"})[["sentiment", "review_body"]].copy()
    out["review_body"] = out["review_body"].str.replace(r"[\t\r\n]+", " ", regex=True)
    return out


def course_split(raw: pd.DataFrame, seed: int) -> pd.DataFrame:
    """``sentiment``, ``review_body``, ``split`` (train / validation / test), in that order of rows."""
    complete = raw.dropna()
    smallest = complete["sentiment"].value_counts().min()
    balanced = complete.groupby("sentiment").sample(n=smallest, random_state=seed)
    train, rest = train_test_split(balanced, test_size=0.10, stratify=balanced["sentiment"], random_state=seed)
    validation, test = train_test_split(rest, test_size=0.5, stratify=rest["sentiment"], random_state=seed)
    parts = [train.assign(split="train"), validation.assign(split="validation"), test.assign(split="test")]
    return pd.concat([_reviews(part).assign(split=part["split"]) for part in parts])


def never_drawn(raw: pd.DataFrame, seed: int = HELD_OUT_SEED) -> pd.DataFrame:
    """The reviews with a text and a missing value elsewhere, balanced by class, shuffled."""
    with_text = raw[raw["Review Text"].notna()]
    incomplete = with_text.drop(with_text.dropna().index)
    smallest = incomplete["sentiment"].value_counts().min()
    balanced = incomplete.groupby("sentiment").sample(n=smallest, random_state=seed)
    return _reviews(balanced.sample(frac=1, random_state=seed))


def write_files(
    raw_path: Path, seed: int, out: Path, held_out_path: Path | None = None
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Write the split of ``seed`` to ``out`` (TSV with a split column) and, given ``held_out_path``, the never-drawn
    reviews there; returns both frames (None: no held-out file asked for)."""
    raw = read_raw(raw_path)
    split = course_split(raw, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    split.to_csv(out, sep="\t", index=False)
    held_out = None
    if held_out_path is not None:
        held_out = never_drawn(raw)
        held_out_path.parent.mkdir(parents=True, exist_ok=True)
        held_out.to_csv(held_out_path, sep="\t", index=False)
    return split, held_out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True, help="the split's TSV (with a split column)")
    parser.add_argument("--held-out", type=Path, help="also write the never-drawn reviews here (TSV)")
    parser.add_argument("--raw", type=Path, help=f"the raw CSV (default: {RAW_FILE} in the data folder)")
    args = parser.parse_args(argv)
    path = args.raw or data_dir() / RAW_FILE
    if not path.is_file():
        parser.error(f"{path} not found; set REVIEWTUNE_DATA_DIR or --raw to the raw Kaggle CSV")
    split, held_out = write_files(path, args.seed, args.out, args.held_out)
    print(f"{args.out}: {split['split'].value_counts().reindex(['train', 'validation', 'test']).to_dict()}")
    if held_out is not None:
        print(f"{args.held_out}: {len(held_out)} reviews, {held_out['sentiment'].value_counts().sort_index().to_dict()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
