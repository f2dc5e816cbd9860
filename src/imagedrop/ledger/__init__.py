"""The ledger: durable jobs, batches and callback deliveries, on SQLite or PostgreSQL.

`open_ledger` picks the backend from a URL and imports it lazily; `core.Ledger` holds the
logic, written once. The records it takes and gives (`imagedrop.records`) are exported here.
"""

from __future__ import annotations

from imagedrop.errors import ConfigError, MissingDependencyError
from imagedrop.ledger.core import Ledger
from imagedrop.records import (
    Batch,
    BatchProgress,
    BudgetLimit,
    BudgetRefusal,
    Delivery,
    DeliveryAttempt,
    DeliveryFilter,
    DeliveryLog,
    DeliveryState,
    DropItem,
    Job,
    JobFilter,
    JobKind,
    JobState,
    NewBatch,
    NewDelivery,
    NewJob,
    Page,
    Requeued,
    SubscriberState,
)


def open_ledger(database_url: str) -> Ledger:
    """The ledger for a URL: `sqlite:///path` (or `sqlite://:memory:`) or `postgresql://…`."""
    if database_url.startswith("sqlite:"):
        from imagedrop.ledger.sqlite import SqliteLedger

        return SqliteLedger.from_url(database_url)
    if database_url.startswith(("postgresql:", "postgres:")):
        try:
            from imagedrop.ledger.postgres import PostgresLedger
        except ModuleNotFoundError as exc:  # the module or its driver
            raise MissingDependencyError(
                "the PostgreSQL ledger needs its driver: pip install 'imagedrop[postgres]'"
            ) from exc
        return PostgresLedger.from_url(database_url)
    scheme = database_url.split(":")[0]
    raise ConfigError(f"IMAGEDROP_DATABASE_URL: unsupported scheme {scheme!r}")


__all__ = [
    "Batch", "BatchProgress", "BudgetLimit", "BudgetRefusal", "Delivery", "DeliveryAttempt",
    "DeliveryFilter", "DeliveryLog", "DeliveryState", "DropItem", "Job", "JobFilter", "JobKind",
    "JobState", "Ledger", "NewBatch", "NewDelivery", "NewJob", "Page", "Requeued",
    "SubscriberState", "open_ledger",
]
