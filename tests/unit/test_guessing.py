"""The accuracy of always answering the test split's most common class, from evaluation.json's metrics."""

from __future__ import annotations

from decimal import Decimal

import pytest

from reviewtune.core.guessing import MostCommonClass, most_common_class


def metrics(*supports, label_keys=("-1", "0", "1")):
    return {"per_class": {key: {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": support}
                          for key, support in zip(label_keys, supports, strict=True)}}


def test_the_most_common_class_and_its_share():
    assert most_common_class(metrics(10, 30, 60)) == MostCommonClass(1, 0.6)
    assert most_common_class(metrics(50, 30, 20)) == MostCommonClass(-1, 0.5)
    assert most_common_class(metrics(50, 50, 0)) == MostCommonClass(-1, 0.5, (0,))
    # as the run record keeps them (DynamoDB numbers)
    assert most_common_class(metrics(Decimal(1), Decimal(3), Decimal(1))) == MostCommonClass(0, 0.6)


def test_a_tie_names_every_class_as_common():
    assert most_common_class(metrics(18, 18, 18)).name == "any one class"
    assert most_common_class(metrics(5, 18, 18)).name == "neutral or positive"
    assert most_common_class(metrics(5, 18, 18)).share == 18 / 41


@pytest.mark.parametrize("given", [
    {},
    {"per_class": "no"},
    metrics(10, 30, label_keys=("-1", "0")),  # a class the evaluation did not report
    metrics(10, None, 3),
    metrics(10, "many", 3),
    metrics(10, -1, 3),
    metrics(0, 0, 0),
    None,
])
def test_nothing_is_judged_without_every_class_s_support(given):
    assert most_common_class(given) is None


@pytest.mark.parametrize(("accuracy", "beaten"), [(1 / 3, False), (0.3333, False), (0.3334, True), (0.9, True)])
def test_beating_it_takes_more_than_its_share_even_with_float_error(accuracy, beaten):
    share = most_common_class(metrics(18, 18, 18))
    assert share.beaten_by(accuracy) is beaten
    assert share.beaten_by(18 / 54) is False
    assert share.beaten_by(Decimal("0.3334")) is True  # as a run record keeps it


def test_its_text():
    assert most_common_class(metrics(7, 20, 27)).text() == (
        "no better than always answering positive (50.00 % of the test reviews)")
