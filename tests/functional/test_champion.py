"""The champion pointer in the runs table (moto DynamoDB, table from template.yaml) and training-text hashes in S3.

GIVEN a dataset's champion item, WHEN a challenger brings a comparison (both models on the same test reviews)
or a person promotes a run, THEN the pointer moves only as the margin and the conditional write allow.
"""

from __future__ import annotations

import boto3
import pytest
from boto3.dynamodb.conditions import Key

from reviewtune.core import champion as champion_module
from reviewtune.core.champion import (
    ALREADY,
    CHAMPIONS_INDEX,
    FIRST,
    KEPT,
    NOT_COMPARED,
    PROMOTED,
    ChampionChanged,
    Comparison,
    get_champion,
    list_champions,
    promote_manually,
    set_champion,
)
from reviewtune.core.dataset import review_key
from reviewtune.core.runs import DATASET_INDEX, STATUS_INDEX
from reviewtune.core.train_hashes import read_train_hashes, text_hash, train_hashes_key, write_train_hashes
from tests.support import champion as support_champion
from tests.support.aws import REGION
from tests.support.champion import challenge
from tests.support.faults import Failing

DATASET = "team-a/reviews.tsv"
SPLIT = "sha256:test-split-1"


@pytest.fixture
def table(stack):
    return boto3.resource("dynamodb", region_name=REGION).Table(stack.runs_table)


def measured(champion_run_id, challenger, champion, rows=309, left_out=0, overlap_checked=True):
    """What the evaluation job writes: both accuracies on the same ``rows`` test reviews."""
    return Comparison.from_evaluation({
        "champion_run_id": champion_run_id, "rows_compared": rows, "rows_left_out": left_out,
        "overlap_checked": overlap_checked, "challenger_accuracy": challenger, "champion_accuracy": champion,
    })


def promote(table, run_id, accuracy, comparison=None, margin=0.5, **extra):
    return challenge(table, DATASET, run_id=run_id, accuracy=accuracy, test_rows=320, test_split=SPLIT,
                     comparison=comparison, margin_points=margin, **extra)


def test_first_run_becomes_champion_and_a_better_one_on_the_same_reviews_replaces_it(table):
    first = promote(table, "r1", 0.731)
    worse = promote(table, "r2", 0.760, measured("r1", 0.733, 0.731))
    better = promote(table, "r3", 0.700, measured("r1", 0.752, 0.731, left_out=11))

    assert (first.label, first.champion_run_id) == (FIRST, "r1")
    assert first.reason == "first champion: challenger 73.10 % on 320 test reviews"
    # r2's own test accuracy (76 %) is higher, but on the reviews both were measured on it gains only 0.2 points.
    assert (worse.label, worse.champion_run_id) == (KEPT, "r1")
    assert worse.reason == "champion kept: challenger 73.30 % vs champion 73.10 % on the same 309 test reviews (+0.20 points, margin 0.5 points)"
    assert (better.label, better.champion_run_id) == (PROMOTED, "r3")
    assert better.reason == "new champion: challenger 75.20 % vs champion 73.10 % on the same 309 test reviews (+2.10 points, margin 0.5 points)"
    stored = get_champion(table, DATASET)
    assert stored.run_id == "r3" and stored.version == 2
    assert stored.accuracy == pytest.approx(0.700) and stored.test_rows == 320  # its own test split, all rows
    assert [(h["run_id"], h["why"]) for h in stored.history] == [("r1", first.reason), ("r3", better.reason)]


@pytest.mark.parametrize(
    ("challenger", "champion", "margin", "label"),
    [
        (0.7350, 0.7300, 0.5, PROMOTED),  # exactly the margin
        (0.7349, 0.7300, 0.5, KEPT),
        (0.7450, 0.7300, 2.0, KEPT),  # +1.5 points is not enough with a 2-point margin
        (0.7500, 0.7300, 2.0, PROMOTED),
        (0.7300, 0.7300, 0.0, KEPT),  # a tie never replaces the champion
        (0.7000, 0.7300, 0.0, KEPT),
    ],
)
def test_the_margin_decides_both_ways(table, challenger, champion, margin, label):
    promote(table, "r1", 0.73)

    outcome = promote(table, "r2", 0.9, measured("r1", challenger, champion), margin=margin)

    assert outcome.label == label
    assert get_champion(table, DATASET).run_id == ("r2" if label == PROMOTED else "r1")
    assert f"margin {margin:g} points)" in outcome.reason


def test_without_a_comparison_the_champion_stays_and_the_reason_says_why(table):
    promote(table, "r1", 0.70)

    outcome = promote(table, "r2", 0.95, None, not_measured="its model artifact cannot be read: gone")

    assert (outcome.label, outcome.champion_run_id) == (NOT_COMPARED, "r1")
    assert outcome.reason == (
        "champion kept: r1 was not measured on this run's test reviews: its model artifact cannot be read: gone; "
        "promote the challenger by hand if wanted"
    )
    assert get_champion(table, DATASET).version == 1


def test_a_comparison_with_a_former_champion_does_not_count(table):
    promote(table, "r1", 0.70)
    promote(table, "r2", 0.80, measured("r1", 0.80, 0.70))

    outcome = promote(table, "r3", 0.95, measured("r1", 0.95, 0.70))  # measured against r1, but r2 is champion

    assert outcome.label == NOT_COMPARED and outcome.champion_run_id == "r2"
    assert "r2 became champion after the evaluation measured r1" in outcome.reason
    assert get_champion(table, DATASET).run_id == "r2"


def test_when_every_test_review_was_in_the_champion_s_training_data_nothing_is_compared(table):
    promote(table, "r1", 0.70)

    outcome = promote(table, "r2", 0.99, measured("r1", None, None, rows=0, left_out=42))

    assert outcome.label == NOT_COMPARED
    assert "all 42 test reviews were in r1's training data" in outcome.reason
    assert get_champion(table, DATASET).run_id == "r1"


def test_a_run_that_is_champion_already_stays_so_and_a_retry_tells_its_own_decision_again(table):
    first = promote(table, "r1", 0.70)
    again = promote(table, "r1", 0.70)  # record_results retried after the pointer was written
    assert (again.label, again.reason) == (first.label, first.reason) == (FIRST, first.reason)
    better = promote(table, "r2", 0.70, measured("r1", 0.76, 0.70))
    assert promote(table, "r2", 0.70, measured("r1", 0.76, 0.70)) == better and better.label == PROMOTED
    assert get_champion(table, DATASET).version == 2

    promote_manually(table, DATASET, run_id="r1", accuracy=0.70, test_rows=320, test_split=SPLIT,
                     reason="rolled back", expected_run_id="r2", by="ops")
    assert promote(table, "r1", 0.70).label == ALREADY  # a person put it there: not this run's decision
    assert get_champion(table, DATASET).version == 3


def test_a_pointer_change_between_reading_and_writing_is_read_again_and_decided_again(table, monkeypatch):
    promote(table, "r1", 0.70)
    real_get = champion_module.get_champion
    reads = []

    def read_then_someone_promotes_r9(table_, dataset):
        seen = real_get(table_, dataset)
        reads.append(seen.run_id)
        if len(reads) == 2:  # challenge read r1, then set_champion reads r1 too: now a person promotes r9
            promote_manually(table_, dataset, run_id="r9", accuracy=0.72, test_rows=300, test_split=SPLIT,
                             reason="by hand", expected_run_id="r1")
        return seen

    with monkeypatch.context() as patched:
        patched.setattr(champion_module, "get_champion", read_then_someone_promotes_r9)
        outcome = promote(table, "r2", 0.90, measured("r1", 0.90, 0.70))

    # The write naming r1 failed; read again, r9 is champion and was never measured against r2: r9 stays.
    assert outcome.label == NOT_COMPARED and outcome.champion_run_id == "r9"
    stored = get_champion(table, DATASET)
    assert stored.run_id == "r9" and [h["run_id"] for h in stored.history] == ["r1", "r9"]


def test_a_pointer_that_keeps_changing_gives_up_with_champion_changed(table, monkeypatch):
    def always_fails(*args, **kwargs):
        raise ChampionChanged("changed meanwhile")

    monkeypatch.setattr(support_champion, "set_champion", always_fails)
    with pytest.raises(ChampionChanged, match="kept changing"):
        promote(table, "r1", 0.70)
    assert get_champion(table, DATASET) is None


@pytest.mark.parametrize(
    ("section", "error"),
    [
        ([], "must be an object"),
        ({"rows_compared": 1}, "champion_run_id"),
        ({"champion_run_id": "r1", "rows_compared": -1, "rows_left_out": 0, "overlap_checked": True}, "rows_compared"),
        ({"champion_run_id": "r1", "rows_compared": 3, "rows_left_out": 0, "overlap_checked": "yes"}, "overlap_checked"),
        ({"champion_run_id": "r1", "rows_compared": 3, "rows_left_out": 0, "overlap_checked": True,
          "challenger_accuracy": 1.2, "champion_accuracy": 0.5}, "challenger_accuracy"),
        ({"champion_run_id": "r1", "rows_compared": 3, "rows_left_out": 0, "overlap_checked": True,
          "challenger_accuracy": 0.5}, "champion_accuracy"),
        ({"champion_run_id": "r1", "rows_compared": 3, "rows_left_out": 0, "overlap_checked": True,
          "challenger_accuracy": 0.5, "champion_accuracy": 0.5, "challenger_only_correct": 1.5,
          "champion_only_correct": 0}, "challenger_only_correct"),
        ({"champion_run_id": "r1", "rows_compared": 3, "rows_left_out": 0, "overlap_checked": True,
          "challenger_accuracy": 0.5, "champion_accuracy": 0.5, "challenger_only_correct": 2,
          "champion_only_correct": 2}, "4 reviews right by one model only, of 3 compared"),
        ({"champion_run_id": "r1", "rows_compared": 300, "rows_left_out": 0, "overlap_checked": True,
          "challenger_accuracy": 0.8, "champion_accuracy": 0.75, "challenger_correct": 240, "champion_correct": 225,
          "challenger_only_correct": 0, "champion_only_correct": 30},
         "0 reviews right by the challenger only and 30 by the champion only do not make the 240 and 225 right"),
    ],
)
def test_a_malformed_comparison_is_refused_naming_the_field(section, error):
    with pytest.raises(ValueError, match=error):
        Comparison.from_evaluation(section)


def test_a_lead_that_may_be_chance_keeps_the_champion_and_the_test_is_off_for_a_comparison_without_counts(table):
    promote(table, "r1", 0.731)
    section = {"champion_run_id": "r1", "rows_compared": 309, "rows_left_out": 0, "overlap_checked": True,
               "challenger_accuracy": 235 / 309, "champion_accuracy": 228 / 309}

    kept = promote(table, "r2", 0.76, Comparison.from_evaluation(
        {**section, "challenger_only_correct": 25, "champion_only_correct": 18}), max_p_value=0.05)
    assert kept.label == KEPT and "McNemar p 0.360, over the 0.05" in kept.reason

    # an evaluation job made before it counted them: the margin alone decides, as it did
    promoted = promote(table, "r3", 0.76, Comparison.from_evaluation(section), max_p_value=0.05)
    assert promoted.label == PROMOTED and "McNemar" not in promoted.reason


def test_stale_writer_loses_and_nothing_is_overwritten(table):
    promote(table, "r1", 0.70)
    set_champion(
        table,
        DATASET,
        run_id="r2",
        accuracy=0.72,
        test_rows=309,
        test_split=SPLIT,
        why="x",
        expected_run_id="r1",
    )

    with pytest.raises(ChampionChanged):  # still believes r1 is champion
        set_champion(
            table,
            DATASET,
            run_id="r3",
            accuracy=0.80,
            test_rows=309,
            test_split=SPLIT,
            why="y",
            expected_run_id="r1",
        )
    with pytest.raises(ChampionChanged):  # believes there is none
        set_champion(
            table,
            DATASET,
            run_id="r4",
            accuracy=0.80,
            test_rows=309,
            test_split=SPLIT,
            why="z",
            expected_run_id=None,
        )
    assert get_champion(table, DATASET).run_id == "r2"


def test_a_promotion_meeting_a_champion_transaction_in_flight_changes_nothing_and_says_so(table):
    promote_manually(table, DATASET, run_id="r1", accuracy=0.70, test_rows=320, test_split=SPLIT,
                     reason="first", expected_run_id=None)
    busy = Failing(table, "put_item", "TransactionConflictException", "a transaction is writing this item")
    with pytest.raises(ChampionChanged, match="changed while r2 was being promoted; read it again"):
        promote_manually(busy, DATASET, run_id="r2", accuracy=0.72, test_rows=309, test_split=SPLIT,
                         reason="mine", expected_run_id="r1")
    assert get_champion(table, DATASET).run_id == "r1"


def test_conditional_write_rejects_a_change_between_read_and_write(table, monkeypatch):
    promote(table, "r1", 0.70)
    real_get = champion_module.get_champion

    def read_then_someone_else_writes(table_, dataset):
        seen = real_get(table_, dataset)
        table_.update_item(
            Key={"run_id": "champion#" + dataset},
            UpdateExpression="SET champion_run_id = :r, version = version + :one",
            ExpressionAttributeValues={":r": "other", ":one": 1},
        )
        return seen

    with monkeypatch.context() as patched, pytest.raises(ChampionChanged, match="changed while r2 was being promoted"):
        patched.setattr(champion_module, "get_champion", read_then_someone_else_writes)
        set_champion(
            table,
            DATASET,
            run_id="r2",
            accuracy=0.9,
            test_rows=309,
            test_split=SPLIT,
            why="w",
            expected_run_id="r1",
        )
    assert get_champion(table, DATASET).run_id == "other"


def test_manual_promotion_is_recorded_with_its_reason_and_who(table):
    promote(table, "r1", 0.75)

    champion = promote_manually(
        table,
        DATASET,
        run_id="r2",
        accuracy=0.74,
        test_rows=309,
        test_split=SPLIT,
        reason="r1 overfits the spring collection",
        expected_run_id="r1",
        by="arn:aws:iam::123456789012:user/ops",
    )

    assert champion.run_id == "r2"
    assert champion.history[-1]["why"] == "promoted manually: r1 overfits the spring collection"
    assert champion.history[-1]["by"] == "arn:aws:iam::123456789012:user/ops"
    assert get_champion(table, DATASET).history == champion.history
    with pytest.raises(ValueError, match="needs a reason"):
        promote_manually(
            table,
            DATASET,
            run_id="r3",
            accuracy=0.7,
            test_rows=1,
            test_split=SPLIT,
            reason=" ",
            expected_run_id="r2",
        )


def test_champion_items_stay_out_of_the_run_indexes_and_are_listed_by_their_own(table):
    promote(table, "r1", 0.75)
    challenge(table, "team-b/other.tsv", run_id="b1", accuracy=0.6, test_rows=10, test_split="s", comparison=None)

    by_dataset = table.query(IndexName=DATASET_INDEX, KeyConditionExpression=Key("dataset").eq(DATASET))[
        "Items"
    ]
    scanned_status = table.scan(IndexName=STATUS_INDEX)["Items"]

    assert by_dataset == [] and scanned_status == []
    assert get_champion(table, "another/dataset.tsv") is None
    listed = table.query(IndexName=CHAMPIONS_INDEX, KeyConditionExpression=Key("kind").eq("champion"))["Items"]
    assert sorted(i["champion_of"] for i in listed) == [DATASET, "team-b/other.tsv"]
    assert [(c.dataset, c.run_id) for c in list_champions(table)] == [(DATASET, "r1"), ("team-b/other.tsv", "b1")]


def test_train_hashes_round_trip_through_s3(stack):
    s3 = boto3.client("s3", region_name=REGION)
    texts = ["Great  dress!", "great dress! ", "Too small", "ＬＯＶＥ it"]

    key = write_train_hashes(s3, stack.bucket, "r1", map(review_key, texts))
    hashes = read_train_hashes(s3, stack.bucket, "r1")

    assert key == train_hashes_key("r1") == "runs/r1/data/train_hashes.txt"
    assert hashes == {text_hash("great dress!"), text_hash("too small"), text_hash("love it")}
    assert len(hashes) == 3
    assert read_train_hashes(s3, stack.bucket, "never-written") is None
    s3.put_object(Bucket=stack.bucket, Key=train_hashes_key("bad"), Body=b"not-a-hash\n")
    with pytest.raises(ValueError, match="line 1"):
        read_train_hashes(s3, stack.bucket, "bad")
