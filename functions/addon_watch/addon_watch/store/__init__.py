"""State stores: SQLite for one machine, OSS for Function Compute.

``open_store`` picks one from the settings; both implement ``Store``.
"""

from __future__ import annotations

from collections.abc import Callable

from ..config import Settings
from ..credentials import Credentials
from .base import (
    DEFAULT_LEASE,
    DEFAULT_MAX_AGE,
    FORMAT_VERSION,
    Claim,
    CorruptRecordError,
    OutboxItem,
    PendingScan,
    Store,
    retry_delay,
)
from .sqlite import SqliteStore

__all__ = [
    "DEFAULT_LEASE",
    "DEFAULT_MAX_AGE",
    "FORMAT_VERSION",
    "Claim",
    "CorruptRecordError",
    "OutboxItem",
    "PendingScan",
    "SqliteStore",
    "Store",
    "open_store",
    "retry_delay",
]


def open_store(settings: Settings, credentials: Callable[[], Credentials]) -> Store:
    """The store ``STATE_STORE`` names; the OSS SDK is imported only for an OSS store."""
    if settings.oss_store is not None:
        from .oss import OssStore

        location = settings.oss_store
        return OssStore.connect(
            endpoint=location.endpoint,
            region=location.region,
            bucket=location.bucket,
            prefix=location.prefix,
            credentials=credentials,
        )
    assert settings.state_path is not None
    return SqliteStore(settings.state_path)
