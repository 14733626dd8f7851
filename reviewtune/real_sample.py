"""The embedded sample that `make run` trains on: real reviews, a small balanced draw from a public dataset.

Source: "Women's E-Commerce Clothing Reviews" (nicapotato, Kaggle; licence CC0: Public Domain), the original file
``Womens_Clothing_E-Commerce_Reviews.csv`` (23,486 rows). The sample is made from it by :func:`build`, which is
deterministic, so anyone with the original file can check it::

    python -m reviewtune.real_sample build Womens_Clothing_E-Commerce_Reviews.csv          # writes SAMPLE_FILE
    python -m reviewtune.real_sample check Womens_Clothing_E-Commerce_Reviews.csv          # compares with it

How: rows with a review text; sentiment from the rating (1-2: -1, 3: 0, 4-5: 1); line breaks and tabs in a review
become spaces; a text that occurs more than once (as the pipeline compares reviews: Unicode NFKC, case and spacing
aside) is kept once; then ``PER_CLASS`` reviews per class are drawn with a fixed seed and the rows shuffled. Columns:
``sentiment``, ``review_body``, ``product_category`` (the dataset's Class Name).

The tests use :mod:`reviewtune.sample_data` (synthetic, made on the fly, any size) instead.
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import sys
from pathlib import Path

from reviewtune.core.train_hashes import normalize_text

SAMPLE_FILE = Path(__file__).resolve().parent / "data" / "sample-reviews.tsv"
SAMPLE_KEY = "sample-reviews.tsv"  # its name under incoming/
PER_CLASS = 400
SEED = 20261130
SOURCE = "Women's E-Commerce Clothing Reviews (Kaggle, CC0: Public Domain)"
COLUMNS = ("sentiment", "review_body", "product_category")


def sentiment(rating: str) -> int | None:
    """-1 / 0 / 1 from a 1-5 star rating; None for anything else."""
    try:
        stars = int(rating)
    except ValueError:
        return None
    if not 1 <= stars <= 5:
        return None
    return -1 if stars <= 2 else (0 if stars == 3 else 1)


def _clean(text: str) -> str:
    return " ".join(text.split())


def build(raw_csv: Path, per_class: int = PER_CLASS, seed: int = SEED) -> bytes:
    """The sample's bytes (UTF-8 TSV) drawn from the original CSV."""
    by_class: dict[int, list[tuple[str, str]]] = {-1: [], 0: [], 1: []}
    seen: set[str] = set()
    with raw_csv.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            text = _clean(row.get("Review Text") or "")
            label = sentiment((row.get("Rating") or "").strip())
            same = normalize_text(text)  # as the pipeline compares reviews (dataset.review_key)
            if not text or label is None or same in seen:
                continue
            seen.add(same)
            by_class[label].append((text, _clean(row.get("Class Name") or "")))
    rng = random.Random(seed)
    rows = []
    for label, reviews in by_class.items():
        if len(reviews) < per_class:
            raise ValueError(f"{raw_csv} has {len(reviews)} distinct reviews of sentiment {label}, fewer than {per_class}")
        rows += [(label, text, category) for text, category in rng.sample(reviews, per_class)]
    rng.shuffle(rows)
    out = io.StringIO()
    writer = csv.writer(out, delimiter="\t", lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def sample_bytes() -> bytes:
    """The committed sample file."""
    return SAMPLE_FILE.read_bytes()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reviewtune.real_sample", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("build", "check"))
    parser.add_argument("raw_csv", type=Path, help="Womens_Clothing_E-Commerce_Reviews.csv")
    args = parser.parse_args(argv)
    made = build(args.raw_csv)
    if args.action == "build":
        SAMPLE_FILE.parent.mkdir(parents=True, exist_ok=True)
        SAMPLE_FILE.write_bytes(made)
        print(f"wrote {SAMPLE_FILE} ({len(made):,} bytes, {3 * PER_CLASS:,} reviews)")
        return 0
    if made != sample_bytes():
        print(f"{SAMPLE_FILE} differs from what {args.raw_csv} gives", file=sys.stderr)
        return 1
    print(f"{SAMPLE_FILE} is what {args.raw_csv} gives")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
