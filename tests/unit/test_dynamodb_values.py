"""moto writes DynamoDB's attribute values directly in the tests (tests/support/dynamodb_values.py): its responses
must be byte for byte those of moto's own walk over the shapes."""

from __future__ import annotations

import json
from decimal import Decimal

import boto3
import pytest
from boto3.dynamodb.types import Binary
from moto import mock_aws

from tests.support import dynamodb_values
from tests.support.dynamodb_values import NotPlain, attribute_value

EVERY_KIND = {
    "pk": "run-1",
    "text": "a review, with \t tabs and ünïcödé",
    "empty_text": "",
    "count": 42,
    "ratio": Decimal("0.7379"),
    "negative": Decimal("-1"),
    "blob": Binary(b"\x00\x01binary\xff"),
    "empty_blob": Binary(b""),
    "names": {"a", "b"},
    "numbers": {1, Decimal("2.5")},
    "blobs": {Binary(b"x"), Binary(b"\xfe")},
    "nothing": None,
    "yes": True,
    "no": False,
    "empty_map": {},
    "empty_list": [],
    "nested": {"status_history": {"CLAIMED": "2026-12-01T00:00:00Z"}, "trials": [
        {"name": "t-001", "objective": Decimal("74.35"), "ok": True, "tags": ["x", None, {"deep": [1, [2, [3]]]}]},
        {"name": "t-002", "objective": None, "bytes": Binary(b"\x80")},
    ]},
}


@pytest.fixture
def table():
    with mock_aws():
        resource = boto3.resource("dynamodb", region_name="us-east-1")
        created = resource.create_table(
            TableName="values", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST",
        )
        created.put_item(Item=EVERY_KIND)
        yield created
    dynamodb_values.write_directly()


def bodies(table) -> list[bytes]:
    """The raw bodies of reads and writes that return items."""
    client = table.meta.client
    seen: list[bytes] = []
    def keep(response_dict, **_):
        seen.append(response_dict["body"])

    client.meta.events.register("before-parse.dynamodb.*", keep, unique_id="bodies")
    table.get_item(Key={"pk": "run-1"})
    table.scan()
    table.query(KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": "run-1"})
    table.update_item(Key={"pk": "run-1"}, UpdateExpression="SET #c = :one",
                      ExpressionAttributeNames={"#c": "count"}, ExpressionAttributeValues={":one": 1},
                      ReturnValues="ALL_NEW")
    client.transact_get_items(TransactItems=[{"Get": {"TableName": "values", "Key": {"pk": "run-1"}}}])
    client.batch_get_item(RequestItems={"values": {"Keys": [{"pk": "run-1"}]}})
    table.put_item(Item={**EVERY_KIND, "pk": "run-2"}, ReturnValues="ALL_OLD")
    table.put_item(Item={**EVERY_KIND, "pk": "run-2", "count": 0}, ReturnValues="ALL_OLD")
    client.meta.events.unregister("before-parse.dynamodb.*", unique_id="bodies")
    return seen


def test_every_kind_of_value_is_written_as_moto_writes_it(table):
    dynamodb_values.walk_only()
    walked = bodies(table)
    table.delete_item(Key={"pk": "run-2"})
    table.put_item(Item=EVERY_KIND)
    dynamodb_values.write_directly()
    direct = bodies(table)
    assert len(walked) == len(direct) == 8
    assert [json.loads(body) for body in direct] == [json.loads(body) for body in walked]
    assert direct == walked
    item = table.get_item(Key={"pk": "run-1"})["Item"]  # and boto3 reads back what was written
    assert item["blob"] == Binary(b"\x00\x01binary\xff") and item["numbers"] == {1, Decimal("2.5")}
    assert item["nested"]["trials"][0]["tags"][2] == {"deep": [1, [2, [3]]]} and item["empty_text"] == ""


def test_what_is_not_a_plain_attribute_value_goes_the_usual_way():
    for value in ({}, {"X": "unknown member"}, "S", {"BOOL": "true"}, {"M": ["not", "a", "map"]}, {"L": {"a": 1}},
                  {"B": 12}, {"L": [{"S": "ok"}, object()]}):
        with pytest.raises(NotPlain):
            attribute_value(value)
    assert attribute_value({"S": "x", "N": None}) == {"S": "x"}
