"""The champion pointer in the runs table (moto DynamoDB, table from template.yaml) and training-text hashes in S3."""

from __future__ import annotations

import boto3
import pytest
from boto3.dynamodb.conditions import Key

from reviewtune.core.champion import (
    ChampionChanged,
    get_champion,
    promote_if_better,
    promote_manually,
    set_champion,
)
from reviewtune.core.runs import DATASET_INDEX, STATUS_INDEX
from reviewtune.core.train_hashes import read_train_hashes, text_hash, train_hashes_key, write_train_hashes
from tests.support.aws import REGION

DATASET = "team-a/reviews.tsv"
SPLIT = "s3://bucket/runs/r1/data/test/test.tsv#etag-1"


@pytest.fixture
def table(stack):
    return boto3.resource("dynamodb", region_name=REGION).Table(stack.runs_table)


def promote(table, run_id, accuracy, split=SPLIT, rows=309):
    return promote_if_better(
        table, DATASET, run_id=run_id, accuracy=accuracy, test_rows=rows, test_split=split
    )


def test_first_run_becomes_champion_and_better_runs_replace_it(table):
    first, champion = promote(table, "r1", 0.731)
    worse, kept = promote(table, "r2", 0.733)
    better, replaced = promote(table, "r3", 0.752)

    assert first.promote and champion.run_id == "r1" and champion.version == 1
    assert not worse.promote and kept.run_id == "r1"
    assert better.promote and better.reason.startswith(
        "challenger 75.2 % vs 73.1 % on the same 309 test reviews"
    )
    stored = get_champion(table, DATASET)
    assert stored == replaced
    assert stored.run_id == "r3" and stored.version == 2 and stored.accuracy == pytest.approx(0.752)
    assert [(h["run_id"], h["why"]) for h in stored.history] == [
        ("r1", "first champion: challenger 73.1 % on 309 test reviews"),
        ("r3", better.reason),
    ]


def test_challenger_on_another_test_split_does_not_replace_the_champion(table):
    promote(table, "r1", 0.70)

    decision, champion = promote(table, "r2", 0.95, split="s3://bucket/runs/r2/data/test/test.tsv#etag-2")

    assert not decision.promote
    assert champion.run_id == "r1"


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


def test_conditional_write_rejects_a_change_between_read_and_write(table, monkeypatch):
    promote(table, "r1", 0.70)
    import reviewtune.core.champion as champion_module

    real_get = champion_module.get_champion

    def read_then_someone_else_writes(table_, dataset):
        seen = real_get(table_, dataset)
        table_.update_item(
            Key={"run_id": "champion#" + dataset},
            UpdateExpression="SET champion_run_id = :r, version = version + :one",
            ExpressionAttributeValues={":r": "other", ":one": 1},
        )
        return seen

    monkeypatch.setattr(champion_module, "get_champion", read_then_someone_else_writes)
    with pytest.raises(ChampionChanged, match="changed while r2 was being promoted"):
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
    monkeypatch.undo()
    assert get_champion(table, DATASET).run_id == "other"


def test_manual_promotion_is_recorded_with_its_reason(table):
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
    )

    assert champion.run_id == "r2"
    assert champion.history[-1]["why"] == "promoted manually: r1 overfits the spring collection"
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


def test_champion_item_stays_out_of_the_run_indexes(table):
    promote(table, "r1", 0.75)

    by_dataset = table.query(IndexName=DATASET_INDEX, KeyConditionExpression=Key("dataset").eq(DATASET))[
        "Items"
    ]
    scanned_status = table.scan(IndexName=STATUS_INDEX)["Items"]

    assert by_dataset == [] and scanned_status == []
    assert get_champion(table, "another/dataset.tsv") is None


def test_train_hashes_round_trip_through_s3(stack):
    s3 = boto3.client("s3", region_name=REGION)
    texts = ["Great  dress!", "great dress! ", "Too small", "ＬＯＶＥ it"]

    key = write_train_hashes(s3, stack.bucket, "r1", texts)
    hashes = read_train_hashes(s3, stack.bucket, "r1")

    assert key == train_hashes_key("r1") == "runs/r1/data/train_hashes.txt"
    assert hashes == {text_hash("great dress!"), text_hash("too small"), text_hash("love it")}
    assert len(hashes) == 3
    assert read_train_hashes(s3, stack.bucket, "never-written") is None
    s3.put_object(Bucket=stack.bucket, Key=train_hashes_key("bad"), Body=b"not-a-hash\n")
    with pytest.raises(ValueError, match="line 1"):
        read_train_hashes(s3, stack.bucket, "bad")
