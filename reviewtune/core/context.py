"""What every function builds once per container: settings, clients and the idempotency store."""

from __future__ import annotations

from dataclasses import dataclass

from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, IdempotencyConfig

from reviewtune.core.clients import AwsClients
from reviewtune.core.config import Settings
from reviewtune.core.errors import ConfigError

IDEMPOTENCY_TTL_SECONDS = 24 * 3600
# What the functions' Tracer instruments: every AWS call goes through botocore and there is no other I/O.
# Patching only it (rather than every library the X-Ray SDK knows, sqlite3 and http.client included) keeps
# the import of a handler short.
TRACED_MODULES = ("botocore",)


@dataclass(frozen=True)
class FunctionContext:
    settings: Settings
    clients: AwsClients
    persistence: DynamoDBPersistenceLayer

    @classmethod
    def from_env(cls) -> FunctionContext:
        settings = Settings.from_env()
        if not settings.idempotency_table:
            raise ConfigError("environment variable IDEMPOTENCY_TABLE_NAME is required but not set")
        clients = AwsClients.from_env(settings.runs_table)
        # One boto3 session for the idempotency store and the functions' own clients: the DynamoDB model and
        # the endpoint rules are loaded once per container.
        persistence = DynamoDBPersistenceLayer(table_name=settings.idempotency_table, boto3_session=clients.session)
        return cls(settings=settings, clients=clients, persistence=persistence)


def idempotency_config(event_key: str) -> IdempotencyConfig:
    """Idempotency on the parts of an event that identify one state change (never on event ids)."""
    return IdempotencyConfig(
        event_key_jmespath=event_key,
        raise_on_no_idempotency_key=True,
        expires_after_seconds=IDEMPOTENCY_TTL_SECONDS,
    )
