"""template.yaml storage lifecycle: what the data bucket expires and when, and where its access logs go."""

from __future__ import annotations

from typing import Any

import pytest

from tests.template.helpers import (
    iam_statements,
    parameter_defaults,
    principals,
    properties,
    resolve_conditions,
    resources,
    template,
)

BUCKET_ARN = {"Fn::GetAtt": ["DataBucket", "Arn"]}


def lifecycle_rules(bucket_id: str, **parameters: str) -> dict[str, dict[str, Any]]:
    """The bucket's lifecycle rules as deployed with ``parameters`` over the defaults, by rule id."""
    values = {**parameter_defaults(), **parameters}
    configuration = resolve_conditions(properties(bucket_id)["LifecycleConfiguration"], values)
    rules = {rule["Id"]: rule for rule in configuration["Rules"]}
    assert len(rules) == len(configuration["Rules"]), "rule ids are unique"
    return rules


def expiring_prefixes(rules: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """prefix -> days, for the rules that expire current objects."""
    return {rule.get("Prefix", ""): rule["ExpirationInDays"] for rule in rules.values() if "ExpirationInDays" in rule}


def test_expiry_parameters_are_days_where_zero_keeps_objects():
    parameters = template()["Parameters"]
    for name in ("RunsExpirationDays", "RejectedExpirationDays"):
        assert "0 keeps" in parameters[name]["Description"]
    assert parameter_defaults()["RunsExpirationDays"] == "0"
    assert parameter_defaults()["RejectedExpirationDays"] == "90"


@pytest.mark.parametrize(
    ("name", "accepted", "refused"),
    [
        # runs/ must outlive a run: 0 (keep) or at least 7 days, written as CloudFormation compares it, so that
        # "6.0" or "06" cannot pass for more than 6 and "00" cannot pass for 0
        ("RunsExpirationDays", ["0", "7", "9", "10", "30", "365", "3653"],
         ["1", "6", "06", "6.0", "7.5", "00", "-7", "", " 7", "7 ", "1e3", "seven"]),
        ("RejectedExpirationDays", ["0", "1", "6", "90", "365"], ["00", "01", "1.5", "-1", "", "ninety"]),
    ],
)
def test_expiry_days_are_whole_numbers_checked_as_the_stack_is_made(name, accepted, refused):
    from reviewtune.local.stack import StackError, effective_parameters

    for value in accepted:
        assert effective_parameters(template(), {name: value})[name] == value
    for value in refused:
        with pytest.raises(StackError, match=rf"parameter {name}=.* must match .*0 \(keep\)"):
            effective_parameters(template(), {name: value})


def test_by_default_run_outputs_stay_and_rejected_files_go_after_ninety_days():
    rules = lifecycle_rules("DataBucket")
    assert expiring_prefixes(rules) == {"rejected/": {"Ref": "RejectedExpirationDays"}}
    assert all(rule["Status"] == "Enabled" for rule in rules.values())


@pytest.mark.parametrize(
    ("runs", "rejected", "expected"),
    [
        ("30", "0", {"runs/"}),
        ("365", "7", {"runs/", "rejected/"}),
        ("0", "0", set()),
    ],
)
def test_each_prefix_expires_only_when_its_days_are_not_zero(runs, rejected, expected):
    rules = lifecycle_rules("DataBucket", RunsExpirationDays=runs, RejectedExpirationDays=rejected)
    prefixes = expiring_prefixes(rules)
    assert set(prefixes) == expected
    parameter = {"runs/": "RunsExpirationDays", "rejected/": "RejectedExpirationDays"}
    assert prefixes == {prefix: {"Ref": parameter[prefix]} for prefix in expected}


def test_nothing_expires_dropped_files_or_the_code_runs_refer_to():
    for runs, rejected in (("0", "0"), ("1", "1")):
        prefixes = expiring_prefixes(lifecycle_rules("DataBucket", RunsExpirationDays=runs, RejectedExpirationDays=rejected))
        assert set(prefixes) <= {"runs/", "rejected/"}


def test_expired_and_overwritten_objects_go_ninety_days_later_with_their_delete_markers():
    assert properties("DataBucket")["VersioningConfiguration"] == {"Status": "Enabled"}
    rule = lifecycle_rules("DataBucket")["ExpireNoncurrentVersions"]
    assert "Prefix" not in rule
    assert rule["NoncurrentVersionExpiration"] == {"NoncurrentDays": 90}
    assert rule["ExpiredObjectDeleteMarker"] is True
    assert lifecycle_rules("DataBucket")["AbortIncompleteMultipartUploads"]["AbortIncompleteMultipartUpload"] == {
        "DaysAfterInitiation": 7
    }


def test_data_bucket_access_is_logged_to_a_private_bucket_only_s3_logging_writes_to():
    assert properties("DataBucket")["LoggingConfiguration"] == {
        "DestinationBucketName": {"Ref": "AccessLogsBucket"},
        "LogFilePrefix": "data-bucket/",
    }
    logs = properties("AccessLogsBucket")
    # Server access logs can be delivered only to a bucket encrypted with SSE-S3.
    (encryption,) = logs["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    assert logs["PublicAccessBlockConfiguration"] == dict.fromkeys(
        ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"), True
    )
    assert logs["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    assert resources()["AccessLogsBucket"]["DeletionPolicy"] == "Retain"

    allowed = [s for s in iam_statements() if s.owner == "AccessLogsBucketPolicy" and s.effect == "Allow"]
    (delivery,) = allowed
    assert principals("AccessLogsBucketPolicy", delivery.sid) == {"Service": "logging.s3.amazonaws.com"}
    assert delivery.actions == ("s3:PutObject",)
    assert delivery.resources == ({"Fn::Sub": "${AccessLogsBucket.Arn}/data-bucket/*"},)
    assert delivery.condition == {
        "ArnLike": {"aws:SourceArn": BUCKET_ARN},
        "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
    }
    (deny,) = (s for s in iam_statements() if s.owner == "AccessLogsBucketPolicy" and s.effect == "Deny")
    assert deny.condition == {"Bool": {"aws:SecureTransport": "false"}}


def test_access_logs_are_kept_as_long_as_the_function_logs():
    rules = lifecycle_rules("AccessLogsBucket")
    assert expiring_prefixes(rules) == {"": {"Ref": "LogRetentionDays"}}
    assert rules["ExpireNoncurrentVersions"]["NoncurrentVersionExpiration"]["NoncurrentDays"] <= 30
    assert rules["ExpireNoncurrentVersions"]["ExpiredObjectDeleteMarker"] is True


def test_a_bucket_kept_after_the_stack_keeps_its_policy():
    """CloudFormation deletes a resource without a DeletionPolicy with its stack: a kept bucket whose policy went with
    it would take reviews and models over plain HTTP, and the access logs' bucket would stop receiving the data
    bucket's logs without an error."""
    kept = {rid for rid, resource in resources().items() if resource.get("DeletionPolicy") == "Retain"}
    policies = {rid: resource["Properties"]["Bucket"]["Ref"] for rid, resource in resources().items()
                if resource["Type"] == "AWS::S3::BucketPolicy"}
    assert set(policies.values()) == {"DataBucket", "AccessLogsBucket"} <= kept
    for policy in policies:
        assert resources()[policy].get("DeletionPolicy") == "Retain", policy
        assert resources()[policy].get("UpdateReplacePolicy") == "Retain", policy
