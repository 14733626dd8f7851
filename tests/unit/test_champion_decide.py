"""The champion decision: margin, first champion, and the sentence people read."""

from __future__ import annotations

import pytest

from reviewtune.core.champion import champion_key, decide


def test_challenger_better_by_the_margin_wins_with_the_comparison_in_words():
    decision = decide(0.752, 0.731, 0.5, test_rows=309)

    assert decision.promote
    assert (
        decision.reason
        == "new champion: challenger 75.20 % vs champion 73.10 % on the same 309 test reviews (+2.10 points, margin 0.5 points)"
    )


@pytest.mark.parametrize(
    ("challenger", "champion", "margin", "promote"),
    [
        (0.7350, 0.7300, 0.5, True),  # exactly the margin counts
        (0.7349, 0.7300, 0.5, False),
        (0.7300, 0.7300, 0.0, False),  # a tie never replaces the champion
        (0.7301, 0.7300, 0.0, True),
        (0.7000, 0.7300, 0.5, False),
    ],
)
def test_margin_in_percentage_points(challenger, champion, margin, promote):
    assert decide(challenger, champion, margin).promote is promote


def test_kept_champion_says_by_how_much_the_challenger_fell_short():
    decision = decide(0.7330, 0.7310, 0.5, test_rows=354)

    assert not decision.promote
    assert decision.reason == (
        "champion kept: challenger 73.30 % vs champion 73.10 % on the same 354 test reviews (+0.20 points, margin 0.5 points)"
    )


@pytest.mark.parametrize(
    ("challenger", "champion", "rows", "shown"),
    [
        (150, 149, 201, "+0.498 points"),  # 0.4975: two decimals would read +0.50, the margin, for a champion kept
        (151, 150, 199, "+0.50 points"),  # 0.5025: a new champion, and two decimals say so
        (3, 2, 200, "+0.50 points"),
        (100, 101, 201, "-0.50 points"),
    ],
)
def test_the_difference_shown_never_reads_as_the_other_side_of_the_margin(challenger, champion, rows, shown):
    decision = decide(challenger / rows, champion / rows, 0.5, test_rows=rows)

    assert f"({shown}, margin 0.5 points)" in decision.reason
    assert decision.reason.startswith("new champion" if decision.promote else "champion kept")


def test_first_model_of_a_dataset_becomes_champion():
    decision = decide(0.69, None, test_rows=354)

    assert decision.promote
    assert decision.reason == "first champion: challenger 69.00 % on 354 test reviews"


@pytest.mark.parametrize(
    ("challenger", "champion", "margin"), [(75.2, 0.7, 0.5), (0.7, -0.1, 0.5), (0.7, 0.6, -1)]
)
def test_bad_inputs_are_refused(challenger, champion, margin):
    with pytest.raises(ValueError):
        decide(challenger, champion, margin)


def test_helpers():
    assert decide(0.7523, 0.7, test_rows=12_345).reason.startswith("new champion: challenger 75.23 % vs champion 70.00 % on the same 12,345 ")
    assert champion_key("team-a/reviews.tsv") == "champion#team-a/reviews.tsv"
    with pytest.raises(ValueError):
        champion_key("")
