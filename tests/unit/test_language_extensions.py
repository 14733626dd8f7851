"""AWS::LanguageExtensions offline: Fn::FindInMap's DefaultValue, the rest refused."""

from __future__ import annotations

import pytest

from reviewtune.local import language_extensions
from reviewtune.local.language_extensions import LanguageExtensionError
from reviewtune.local.stack import StackError, to_cloudformation

MAPPINGS = {"Registries": {"us-east-1": {"Training": "111", "Processing": "222"}, "eu-central-2": {"Processing": "333"}}}


def _template(value, transform=("AWS::LanguageExtensions", "AWS::Serverless-2016-10-31")):
    return {
        "Transform": list(transform),
        "Parameters": {"Kind": {"Type": "String", "Default": "Training"}},
        "Mappings": MAPPINGS,
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic", "Properties": {"DisplayName": value}}},
    }


def _lookup(second, default=""):
    return {"Fn::FindInMap": ["Registries", {"Ref": "AWS::Region"}, second, {"DefaultValue": default}]}


def _display_name(template):
    return template["Resources"]["Topic"]["Properties"]["DisplayName"]


@pytest.mark.parametrize(
    ("region", "second", "expected"),
    [
        ("us-east-1", "Training", "111"),  # the entry
        ("eu-central-2", "Training", "none"),  # the Region without that key
        ("eu-central-2", "Processing", "333"),
        ("mx-central-1", "Processing", "none"),  # a Region the mapping lacks
    ],
)
def test_a_lookup_with_a_default_gives_the_entry_or_the_default(region, second, expected):
    applied = language_extensions.apply(_template(_lookup(second, "none")), {}, region)
    assert _display_name(applied) == expected
    assert applied["Transform"] == "AWS::Serverless-2016-10-31"
    assert applied["Mappings"] == MAPPINGS


def test_keys_may_be_parameters_and_the_default_an_intrinsic_function_left_to_cloudformation():
    lookup = {"Fn::FindInMap": ["Registries", "us-east-1", {"Ref": "Kind"}, {"DefaultValue": {"Ref": "AWS::NoValue"}}]}
    assert _display_name(language_extensions.apply(_template(lookup), {"Kind": "Processing"}, "us-east-1")) == "222"
    assert _display_name(language_extensions.apply(_template(lookup), {"Kind": "Other"}, "us-east-1")) == {
        "Ref": "AWS::NoValue"
    }


def test_a_three_argument_lookup_is_left_to_cloudformation_and_the_transform_removed_when_alone():
    lookup = {"Fn::FindInMap": ["Registries", {"Ref": "AWS::Region"}, "Training"]}
    applied = language_extensions.apply(_template(lookup, transform=("AWS::LanguageExtensions",)), {}, "us-east-1")
    assert _display_name(applied) == lookup
    assert "Transform" not in applied


@pytest.mark.parametrize(
    "node",
    [
        {"Fn::Length": [1, 2]},
        {"Fn::ToJsonString": {"a": 1}},
        {"Fn::FindInMap": ["Registries", {"Fn::Sub": "${AWS::Region}"}, "Training", {"DefaultValue": ""}]},
        {"Fn::FindInMap": ["Registries", {"Ref": "AWS::Region"}, "Training", "x"]},
    ],
)
def test_what_cannot_be_applied_offline_is_refused(node):
    with pytest.raises(LanguageExtensionError):
        language_extensions.apply(_template(node), {}, "us-east-1")


def test_for_each_is_refused_and_the_local_stack_says_so():
    template = _template("x")
    template["Resources"]["Fn::ForEach::Topics"] = ["Name", ["A", "B"], {"Topic${Name}": {"Type": "AWS::SNS::Topic"}}]
    with pytest.raises(StackError, match="Fn::ForEach::Topics"):
        to_cloudformation(template, {}, "us-east-1")


def test_the_local_stack_applies_it_before_the_sam_transform():
    template = _template(_lookup("Training", "none"))
    template["Resources"]["Queue"] = {"Type": "AWS::Serverless::SimpleTable"}
    cfn = to_cloudformation(template, {}, "eu-central-2")
    assert _display_name(cfn) == "none"
    assert cfn["Resources"]["Queue"]["Type"] == "AWS::DynamoDB::Table"
