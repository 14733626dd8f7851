from __future__ import annotations

import os

import pytest
from moto import mock_aws

from tests.support.aws import REGION, LambdaContext, create_stack


@pytest.fixture
def aws(monkeypatch):
    for name in list(os.environ):
        if name.startswith("AWS_ENDPOINT_URL") or name in ("AWS_PROFILE",):
            monkeypatch.delenv(name)
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield


@pytest.fixture
def stack(aws, monkeypatch):
    created = create_stack()
    for name, value in created.env().items():
        monkeypatch.setenv(name, value)
    return created


@pytest.fixture
def lambda_context():
    return LambdaContext()
