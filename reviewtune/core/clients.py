"""The AWS clients the functions use, built on first use from the standard environment (AWS_ENDPOINT_URL_<SERVICE>)."""

from __future__ import annotations

from functools import cached_property
from typing import Any

import boto3
from botocore.config import Config

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5})


class AwsClients:
    """Lazily built clients, so that importing a handler costs no client construction."""

    def __init__(self, runs_table_name: str, session: boto3.session.Session | None = None):
        self.runs_table_name = runs_table_name
        self._session = session

    @classmethod
    def from_env(cls, runs_table_name: str) -> AwsClients:
        return cls(runs_table_name)

    @cached_property
    def session(self) -> boto3.session.Session:
        return self._session or boto3.session.Session()

    @cached_property
    def s3(self) -> Any:
        return self.session.client("s3", config=_CONFIG)

    @cached_property
    def sagemaker(self) -> Any:
        return self.session.client("sagemaker", config=_CONFIG)

    @cached_property
    def sns(self) -> Any:
        return self.session.client("sns", config=_CONFIG)

    @cached_property
    def runs_table(self) -> Any:
        return self.session.resource("dynamodb", config=_CONFIG).Table(self.runs_table_name)
