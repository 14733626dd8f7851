"""Model package group names derived from dataset names, and the CreateModelPackage request."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from reviewtune.core.registry import (
    GROUP_NAME_PATTERN,
    client_token,
    model_package_request,
    package_group_name,
    register_model,
    set_approval,
)


@pytest.mark.parametrize(
    "dataset",
    [
        "team-a/reviews.tsv",
        "Équipe B/avis clients été 2026.csv",
        "日本語のレビュー.tsv",
        "   ",
        "a" * 500,
        "--__--",
        "x",
    ],
)
def test_group_name_is_valid_for_any_dataset(dataset):
    name = package_group_name(dataset)

    assert GROUP_NAME_PATTERN.match(name)
    assert len(name) <= 63
    assert name == package_group_name(dataset)  # stable


def test_group_name_stays_readable():
    assert package_group_name("Équipe B/avis été.csv").startswith("reviewtune-equipe-b-avis-ete-csv-")


def test_datasets_that_fold_alike_get_different_groups():
    names = {
        package_group_name(d) for d in ("Team A/reviews.tsv", "team-a/reviews.tsv", "team a reviews tsv")
    }

    assert len(names) == 3


def test_the_scope_changes_the_hash_only_and_the_same_scope_the_same_name():
    bucket = "reviewtune-data-123456789012-" + "b" * 34  # S3's longest bucket name, 63 characters
    scoped = package_group_name("a" * 500, scope=bucket)
    assert GROUP_NAME_PATTERN.match(scoped) and len(scoped) <= 63
    assert scoped == package_group_name("a" * 500, scope=bucket)
    others = {package_group_name("team/a.tsv", scope=scope) for scope in ("", "bucket-one", "bucket-two")}
    assert len(others) == 3 and len({name.rsplit("-", 1)[0] for name in others}) == 1
    assert package_group_name("team/a.tsv", scope="") == package_group_name("team/a.tsv")


def test_empty_dataset_or_bad_prefix_is_refused():
    with pytest.raises(ValueError):
        package_group_name("")
    with pytest.raises(ValueError):
        package_group_name("x", prefix="bad_prefix")


def test_client_token_is_valid_and_stable():
    assert client_token("reviewtune-3f2a9c1d7e5b8a90") == "reviewtune-3f2a9c1d7e5b8a90"
    long = client_token("r" * 80)
    assert len(long) == 36 and long == client_token("r" * 80)


def test_requests_have_the_shape_sagemaker_accepts():
    # The Stubber checks each request against botocore's SageMaker model before answering.
    sagemaker = boto3.client(
        "sagemaker", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    arn = "arn:aws:sagemaker:us-east-1:123456789012:model-package/g/1"
    request = model_package_request(
        group_name="g",
        run_id="reviewtune-3f2a9c1d7e5b8a90",
        image_uri="763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-inference:2.6-cpu",
        model_data_url="s3://b/runs/r/models/job/output/model.tar.gz",
        evaluation_uri="s3://b/runs/r/evaluation/evaluation.json",
        dataset="team-a/reviews.tsv",
        metadata={"test_accuracy": 0.7523, "test_rows": 354},
    )
    with Stubber(sagemaker) as stub:
        stub.add_response("create_model_package", {"ModelPackageArn": arn}, request)
        stub.add_response(
            "update_model_package",
            {"ModelPackageArn": arn},
            {
                "ModelPackageArn": arn,
                "ModelApprovalStatus": "Approved",
                "ApprovalDescription": "first champion",
            },
        )
        assert (
            register_model(
                sagemaker,
                group_name="g",
                run_id="reviewtune-3f2a9c1d7e5b8a90",
                image_uri="763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-inference:2.6-cpu",
                model_data_url="s3://b/runs/r/models/job/output/model.tar.gz",
                evaluation_uri="s3://b/runs/r/evaluation/evaluation.json",
                dataset="team-a/reviews.tsv",
                metadata={"test_accuracy": 0.7523, "test_rows": 354},
            )
            == arn
        )
        set_approval(sagemaker, arn, "Approved", "first champion")
        stub.assert_no_pending_responses()
    assert request["CustomerMetadataProperties"] == {
        "run_id": "reviewtune-3f2a9c1d7e5b8a90",
        "dataset": "team-a/reviews.tsv",
        "test_accuracy": "0.7523",
        "test_rows": "354",
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"approval_status": "Maybe"}, "approval status"),
        ({"model_data_url": "/tmp/model.tar.gz"}, "s3:// URI"),
    ],
)
def test_bad_request_arguments_are_refused(change, message):
    arguments = {
        "group_name": "g",
        "run_id": "r",
        "image_uri": "i",
        "model_data_url": "s3://b/m.tar.gz",
        "evaluation_uri": "s3://b/e.json",
        **change,
    }
    with pytest.raises(ValueError, match=message):
        model_package_request(**arguments)


def test_a_run_follows_its_champion_s_group_only_when_the_stack_may_register_there():
    from types import SimpleNamespace

    from reviewtune.core.registration import group_for

    settings = SimpleNamespace(job_name_prefix="reviewtune", bucket="reviewtune-data-123456789012-us-east-1")
    run = {"run_id": "reviewtune-0123456789abcdef", "dataset": "team/a.tsv"}
    own = package_group_name("team/a.tsv", "reviewtune", scope=settings.bucket)
    legacy = package_group_name("team/a.tsv", "reviewtune")

    def champion(group: str, package: bool = True) -> dict:
        arn = f"arn:aws:sagemaker:us-east-1:123456789012:model-package/{group.lower()}/1"
        return {"registry": {"group": group, **({"model_package_arn": arn} if package else {"error": "refused"})}}

    assert group_for(run, None, settings) == own  # no champion
    assert group_for(run, champion(legacy), settings) == legacy  # the champion's group, named by the dataset alone
    assert group_for(run, champion(legacy.upper()), settings) == legacy.upper()  # group names ignore case
    assert group_for(run, champion(legacy, package=False), settings) == own  # a champion registered nowhere
    # a champion registered under an earlier JobNamePrefix: the functions may not register in its group
    assert group_for(run, champion(package_group_name("team/a.tsv", "older")), settings) == own
    assert group_for({"run_id": run["run_id"]}, None, settings) == package_group_name(
        run["run_id"], "reviewtune", scope=settings.bucket)
