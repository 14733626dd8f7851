"""The AWS clients the functions use, built once from the standard environment (AWS_ENDPOINT_URL_<SERVICE>)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5})


@dataclass(frozen=True)
class AwsClients:
    s3: Any
    sagemaker: Any
    sns: Any
    runs_table: Any

    @classmethod
    def from_env(cls, runs_table_name: str) -> AwsClients:
        session = boto3.session.Session()
        return cls(
            s3=session.client("s3", config=_CONFIG),
            sagemaker=session.client("sagemaker", config=_CONFIG),
            sns=session.client("sns", config=_CONFIG),
            runs_table=session.resource("dynamodb", config=_CONFIG).Table(runs_table_name),
        )
