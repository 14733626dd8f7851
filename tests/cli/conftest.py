from __future__ import annotations

import os

import pytest
from moto import mock_aws

from tests.support.aws import REGION


@pytest.fixture
def moto_account(monkeypatch, tmp_path):
    """A moto account reached as AWS is (no endpoint variables, fake credentials), from an empty working folder (no
    .reviewtune/local.json: the commands go to "AWS")."""
    for name in list(os.environ):
        if name.startswith("AWS_ENDPOINT_URL") or name == "AWS_PROFILE":
            monkeypatch.delenv(name)
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    with mock_aws():
        yield
