"""The synthetic test sample: deterministic, small, and without a repeated review (the reader would count it as one)."""

from __future__ import annotations

import pytest

from reviewtune.core.dataset import split_reviews
from reviewtune.sample_data import sample_reviews, sample_tsv


def test_the_sample_has_no_repeated_review_and_is_the_same_every_time():
    summary = split_reviews(sample_tsv(), "sample-reviews.tsv").summary()
    assert summary["rows_read"] == 900 and summary["duplicates_removed"] == 0 and summary["leakage_removed"] == 0
    assert sum(summary["rows"].values()) == 900 - summary["dropped_by_balancing"]
    assert sample_tsv() == sample_tsv()
    texts = [text.casefold() for _, text in sample_reviews()]
    assert len(set(texts)) == len(texts) == 900


def test_another_seed_is_another_file_of_distinct_reviews():
    files = {sample_tsv(per_class=40, seed=seed) for seed in range(20)}
    assert len(files) == 20
    for seed in (0, 19):
        assert split_reviews(sample_tsv(per_class=40, seed=seed), "s.tsv").summary()["duplicates_removed"] == 0


def test_more_reviews_per_class_than_the_templates_make_is_refused():
    with pytest.raises(ValueError, match="per_class is at most 588"):
        sample_reviews(per_class=589)
