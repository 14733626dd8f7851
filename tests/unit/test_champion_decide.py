"""The champion decision: margin, first champion, and the sentence people read."""

from __future__ import annotations

import pytest

from reviewtune.core.champion import MCNEMAR_EXACT_MAX, Comparison, champion_key, decide, mcnemar_p
from reviewtune.core.formats import MAX_FILE_BYTES


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


@pytest.mark.parametrize(("challenger_only", "champion_only"),
                         [(0, 0), (1, 0), (0, 1), (5, 5), (18, 11), (25, 18), (30, 11), (10, 0), (400, 350), (3, 40),
                          (3000, 3100), (9000, 8800)])  # a test set of tens of thousands of reviews
def test_mcnemar_p_is_the_exact_two_sided_binomial_test_of_the_reviews_one_model_only_got_right(
        challenger_only, champion_only):
    from scipy.stats import binomtest

    n = challenger_only + champion_only
    expected = 1.0 if n == 0 else binomtest(challenger_only, n, 0.5).pvalue
    assert mcnemar_p(challenger_only, champion_only) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("challenger_only", "champion_only"),
                         [(10_001, 10_000), (12_000, 11_000), (30_000, 10), (250_000, 249_000), (150_000, 150_500)])
def test_mcnemar_p_past_the_whole_number_range_is_the_binomial_test_in_floating_point(challenger_only, champion_only):
    from scipy.stats import binomtest

    assert challenger_only + champion_only > MCNEMAR_EXACT_MAX
    expected = binomtest(challenger_only, challenger_only + champion_only, 0.5).pvalue
    assert mcnemar_p(challenger_only, champion_only) == pytest.approx(expected, rel=1e-8, abs=1e-300)


def test_a_comparison_counting_more_reviews_than_any_file_holds_is_refused_before_any_test_is_made():
    """Such counts would make McNemar's test take hours (and the function deciding the champion with it)."""
    section = {"champion_run_id": "r1", "rows_compared": 3 * 10**9, "rows_left_out": 0, "overlap_checked": True,
               "challenger_accuracy": 0.8, "champion_accuracy": 0.7,
               "challenger_only_correct": 10**9, "champion_only_correct": 10**9}
    with pytest.raises(ValueError, match="rows_compared counts 3000000000 reviews, more than a file of at most"):
        Comparison.from_evaluation(section)
    fits = {**section, "rows_compared": MAX_FILE_BYTES, "challenger_only_correct": 5, "champion_only_correct": 4}
    assert Comparison.from_evaluation(fits).discordant == (5, 4)


def test_a_lead_over_the_margin_that_may_be_chance_keeps_the_champion():
    # 309 reviews: 7 more right (+2.27 points), of 43 that one model only got right: p 0.36
    decision = decide(235 / 309, 228 / 309, 0.5, test_rows=309, discordant=(25, 18))

    assert not decision.promote
    assert decision.reason == (
        "champion kept: challenger 76.05 % vs champion 73.79 % on the same 309 test reviews (+2.27 points, margin 0.5 "
        "points; 25 reviews right by the challenger only, 18 by the champion only: McNemar p 0.360, over the 0.05 a new "
        "champion needs, so the lead may be chance)")


def test_a_lead_unlikely_by_chance_makes_a_new_champion_and_says_how_unlikely():
    decision = decide(247 / 309, 228 / 309, 0.5, test_rows=309, discordant=(30, 11))

    assert decision.promote
    assert decision.reason.startswith("new champion: challenger 79.94 % vs champion 73.79 %")
    assert decision.reason.endswith("30 reviews right by the challenger only, 11 by the champion only: McNemar p 0.004)")


@pytest.mark.parametrize(("discordant", "max_p_value", "promote", "p_shown"), [
    ((30, 11), 0.005, True, "0.004"),
    ((30, 11), 0.004, False, "0.0043"),  # three decimals would read as the bound itself
    ((25, 18), 1.0, True, "0.360"),  # 1: the margin alone decides
    ((0, 0), 0.05, False, "1.000"),  # the same predictions: no lead to test (and no gain)
])
def test_the_largest_p_value_is_the_setting_s(discordant, max_p_value, promote, p_shown):
    b, c = discordant
    decision = decide((200 + b) / 309, (200 + c) / 309, 0.0, test_rows=309, discordant=discordant,
                      max_p_value=max_p_value)

    assert decision.promote is promote
    assert f"McNemar p {p_shown}" in decision.reason


def test_a_challenger_behind_the_margin_is_kept_whatever_the_p_value():
    assert not decide(0.7349, 0.7300, 0.5, discordant=(40, 0)).promote


@pytest.mark.parametrize("max_p_value", [0, -0.1, 1.5])
def test_a_largest_p_value_outside_0_to_1_is_refused(max_p_value):
    with pytest.raises(ValueError, match="p-value"):
        decide(0.8, 0.7, 0.5, discordant=(30, 0), max_p_value=max_p_value)


def test_a_lead_in_accuracy_the_reviews_that_differ_do_not_show_keeps_the_champion():
    # counts at odds with the accuracies (a hand-made evaluation.json): the split favours the champion
    decision = decide(0.80, 0.75, 0.5, test_rows=309, discordant=(0, 30))

    assert not decision.promote and decision.reason.startswith("champion kept")
    assert decision.reason.endswith("0 reviews right by the challenger only, 30 by the champion only: McNemar p 0.000, "
                                    "but those favour the champion)")
