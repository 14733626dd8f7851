"""The tests read botocore's service models once per process (tests/support/botocore_models.py)."""

from __future__ import annotations

import boto3
import botocore.session
from botocore import loaders

from tests.support.botocore_models import share_across_sessions


def test_two_sessions_share_one_model_and_build_the_same_clients():
    share_across_sessions()
    share_across_sessions()  # installing twice wraps once
    assert getattr(loaders.Loader.load_service_model, "__wrapped_by_tests__", False)
    assert not getattr(loaders.Loader.load_service_model.__wrapped__, "__wrapped_by_tests__", False)
    first, second = botocore.session.get_session(), botocore.session.get_session()
    assert first.get_service_data("dynamodb") is second.get_service_data("dynamodb")
    a = boto3.Session(region_name="us-east-1").client("sagemaker")
    b = boto3.Session(region_name="eu-west-1").client("sagemaker")
    assert a.meta.service_model.operation_names == b.meta.service_model.operation_names
    assert "CreateHyperParameterTuningJob" in a.meta.service_model.operation_names
    assert a.meta.region_name == "us-east-1" and b.meta.region_name == "eu-west-1"


def test_loaders_with_other_search_paths_read_their_own_models(tmp_path):
    share_across_sessions()
    extra = tmp_path / "custom" / "2026-01-01"
    extra.mkdir(parents=True)
    (extra / "service-2.json").write_text(
        '{"version": "2.0", "metadata": {"apiVersion": "2026-01-01", "endpointPrefix": "custom", "protocol": "json",'
        ' "serviceId": "Custom", "signatureVersion": "v4", "targetPrefix": "Custom"}, "operations": {}, "shapes": {}}'
    )
    default, custom = loaders.Loader(), loaders.Loader(extra_search_paths=[str(tmp_path)])
    assert "custom" in custom.list_available_services("service-2")
    assert "custom" not in default.list_available_services("service-2")
