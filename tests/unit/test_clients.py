"""The clients' settings that the outcome guarantee depends on."""

from __future__ import annotations

import boto3

from reviewtune.core import clients, outbox


def _clients() -> clients.AwsClients:
    return clients.AwsClients("runs", session=boto3.session.Session(region_name="us-east-1"))


def test_sns_publish_is_tried_once_per_call_with_short_timeouts():
    """botocore retrying a Publish whose answer was lost would send the message twice: the outbox retries instead."""
    config = _clients().sns.meta.config
    assert config.retries["total_max_attempts"] == 1
    assert config.connect_timeout + config.read_timeout == clients.SNS_CALL_MAX_SECONDS


def test_an_outbox_lease_outlasts_any_publish_call():
    """A sender still inside its Publish call keeps the lease, so no second sender publishes alongside it."""
    assert outbox.LEASE_SECONDS >= 4 * clients.SNS_CALL_MAX_SECONDS


def test_the_other_clients_keep_botocore_s_retries():
    made = _clients()
    for client in (made.s3, made.sagemaker, made.runs_table.meta.client):
        assert client.meta.config.retries["total_max_attempts"] > 1
