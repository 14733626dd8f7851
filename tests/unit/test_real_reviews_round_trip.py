"""Every real review of the raw Kaggle CSV, written as spreadsheets and scripts write CSV and TSV files, is read back
whole: the reader's checks for quotes left open (a value whose lines read as rows) refuse none of them."""

from __future__ import annotations

import csv
import io

import pandas as pd
import pytest

from bench.common import data_dir
from bench.course_split import RAW_FILE
from reviewtune.core.dataset import split_reviews
from reviewtune.core.reader import clean_text

RAW = data_dir() / RAW_FILE
LAYOUTS = {  # header, and the columns of a row (title, text, rating)
    "text first": (["Review Text", "Rating"], lambda title, text, rating: [text, rating]),
    "text last": (["Rating", "Review Text"], lambda title, text, rating: [rating, text]),
    "text in the middle": (["Title", "Review Text", "Rating", "Age"], lambda title, text, rating: [title, text, rating, 30]),
    "label first, text in the middle": (["Rating", "Review Text", "Title"], lambda title, text, rating: [rating, text, title]),
}


@pytest.fixture(scope="module")
def reviews() -> pd.DataFrame:
    raw = pd.read_csv(RAW, usecols=["Title", "Review Text", "Rating"])
    return raw[raw["Review Text"].notna()].fillna({"Title": ""})


@pytest.mark.skipif(not RAW.is_file(), reason="the raw Kaggle CSV is not in the data folder")
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(("delimiter", "quoting", "ending"), [(",", csv.QUOTE_MINIMAL, "\r\n"), ("\t", csv.QUOTE_MINIMAL, "\n"),
                                                             (",", csv.QUOTE_ALL, "\n")])
def test_every_real_review_is_read_back_whole_whatever_its_column(reviews, layout, delimiter, quoting, ending):
    header, row = LAYOUTS[layout]
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, quoting=quoting, lineterminator=ending)
    writer.writerow(header)
    writer.writerows(row(*values) for values in reviews[["Title", "Review Text", "Rating"]].itertuples(index=False))
    assert sum("\n" in text for text in reviews["Review Text"]) > 2_000  # reviews over several lines among them
    result = split_reviews(out.getvalue().encode(), "reviews.csv" if delimiter == "," else "reviews.tsv",
                           class_balance="none")
    assert result.rows_read == len(reviews)
    read = sorted(review.text for rows in result.splits.values() for review in rows)
    kept = {clean_text(text) for text in reviews["Review Text"]}
    assert set(read) <= kept and len(read) == len(reviews) - result.duplicates_removed - result.leakage_removed
