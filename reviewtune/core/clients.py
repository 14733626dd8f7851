"""The AWS clients the functions use, built on first use from the standard environment (AWS_ENDPOINT_URL_<SERVICE>)."""

from __future__ import annotations

from functools import cached_property
from typing import Any

import boto3
from botocore.config import Config

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5})
# SNS Publish is tried once per call, with short timeouts: a retry inside botocore after a lost answer would publish
# the message twice (a standard topic does not deduplicate), and a short call keeps that window small. The outbox
# retries instead; its lease (outbox.LEASE_SECONDS) outlasts the function that holds it.
SNS_CONNECT_TIMEOUT_SECONDS = 5
SNS_READ_TIMEOUT_SECONDS = 10
SNS_CALL_MAX_SECONDS = SNS_CONNECT_TIMEOUT_SECONDS + SNS_READ_TIMEOUT_SECONDS
_SNS_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": 1},
    connect_timeout=SNS_CONNECT_TIMEOUT_SECONDS,
    read_timeout=SNS_READ_TIMEOUT_SECONDS,
)

# The run's HTML report is read and written after the run is recorded and before its message goes out
# (report_annotation.py): a stalled S3 must not hold the message back or run the function out of time (120 s), so
# each call is tried twice at most, with short timeouts.
REPORT_S3_ATTEMPTS = 2
REPORT_S3_CONNECT_TIMEOUT_SECONDS = 2
REPORT_S3_READ_TIMEOUT_SECONDS = 5


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
    def report_s3(self) -> Any:
        """S3 for the report's champion decision only: few attempts, short timeouts (above)."""
        config = Config(retries={"mode": "standard", "total_max_attempts": REPORT_S3_ATTEMPTS},
                        connect_timeout=REPORT_S3_CONNECT_TIMEOUT_SECONDS, read_timeout=REPORT_S3_READ_TIMEOUT_SECONDS)
        return self.session.client("s3", config=config)

    @cached_property
    def sagemaker(self) -> Any:
        return self.session.client("sagemaker", config=_CONFIG)

    @cached_property
    def sns(self) -> Any:
        return self.session.client("sns", config=_SNS_CONFIG)

    @cached_property
    def sqs(self) -> Any:
        return self.session.client("sqs", config=_CONFIG)

    @cached_property
    def runs_table(self) -> Any:
        return self.session.resource("dynamodb", config=_CONFIG).Table(self.runs_table_name)
