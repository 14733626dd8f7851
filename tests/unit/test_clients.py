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
    """A sender still inside its Publish call keeps the lease, so no second sender publishes alongside it (and the
    lease outlasts the whole function that holds it: tests/template/test_template.py)."""
    assert outbox.LEASE_SECONDS >= 4 * clients.SNS_CALL_MAX_SECONDS


def test_the_other_clients_keep_botocore_s_retries():
    made = _clients()
    for client in (made.s3, made.sagemaker, made.runs_table.meta.client):
        assert client.meta.config.retries["total_max_attempts"] > 1


def test_the_report_client_gives_up_on_a_stalled_s3_after_its_few_short_tries(monkeypatch):
    """The report's champion decision is written before the run's message goes out: an S3 that accepts the
    connection and never answers is tried REPORT_S3_ATTEMPTS times, each ended by the read timeout, then given up."""
    import socket
    import threading

    import pytest
    from botocore.exceptions import ReadTimeoutError

    server = socket.create_server(("127.0.0.1", 0))
    accepted = []

    def accept() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            accepted.append(connection)  # kept open, never answered

    threading.Thread(target=accept, daemon=True).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{server.getsockname()[1]}")
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(clients, "REPORT_S3_READ_TIMEOUT_SECONDS", 0.3)
    try:
        with pytest.raises(ReadTimeoutError):
            _clients().report_s3.get_object(Bucket="b", Key="runs/r/evaluation/report/index.html")
    finally:
        server.close()
        for connection in accepted:
            connection.close()
    assert len(accepted) == clients.REPORT_S3_ATTEMPTS == 2
