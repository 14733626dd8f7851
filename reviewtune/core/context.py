"""What every function builds once per container: settings, clients and the idempotency store."""

from __future__ import annotations

from dataclasses import dataclass

from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, IdempotencyConfig

from reviewtune.core.clients import AwsClients
from reviewtune.core.config import Settings
from reviewtune.core.errors import ConfigError

IDEMPOTENCY_TTL_SECONDS = 24 * 3600


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
        return cls(
            settings=settings,
            clients=AwsClients.from_env(settings.runs_table),
            persistence=DynamoDBPersistenceLayer(table_name=settings.idempotency_table),
        )


def idempotency_config(event_key: str) -> IdempotencyConfig:
    """Idempotency on the parts of an event that identify one state change (never on event ids)."""
    return IdempotencyConfig(
        event_key_jmespath=event_key,
        raise_on_no_idempotency_key=True,
        expires_after_seconds=IDEMPOTENCY_TTL_SECONDS,
    )
