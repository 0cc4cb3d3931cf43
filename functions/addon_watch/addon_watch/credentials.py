"""Alibaba Cloud credentials: the environment first, the default chain otherwise.

The AccessKey from the environment wins: Function Compute puts the function
role's STS credentials there on every invocation, so they are never stale, and
``alibabacloud-credentials`` (slow to import, and it starts a background
thread) is then never imported. Without it the default chain is built once per
instance and its answer reused until shortly before it expires, so that a warm
instance never signs with expired STS credentials.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .config import AccessKey
from .errors import CredentialsError
from .redaction import REDACTOR, Secret

logger = logging.getLogger(__name__)

# The chain is asked again when its credentials have less than this many seconds left.
REFRESH_MARGIN = 300.0
# Credentials that do not say when they expire are asked for again after this long.
UNDATED_TTL = 900.0


@dataclass(frozen=True)
class Credentials:
    """What a signed request needs; the secret parts never print."""

    access_key_id: str
    access_key_secret: Secret
    security_token: Secret | None = None
    expires_at: float | None = None  # seconds since the epoch, when the source says


def _default_provider() -> Any:
    from alibabacloud_credentials.provider import DefaultCredentialsProvider

    return DefaultCredentialsProvider()


class CredentialsChain:
    """The default credentials chain, built on first use, its answer cached until near expiry.

    ``provider_factory`` returns an object with ``get_credentials()``, as the
    providers of ``alibabacloud-credentials`` do; tests pass a fake.
    """

    def __init__(
        self,
        provider_factory: Callable[[], Any] = _default_provider,
        *,
        clock: Callable[[], float] = time.time,
        refresh_margin: float = REFRESH_MARGIN,
        undated_ttl: float = UNDATED_TTL,
    ) -> None:
        self._factory = provider_factory
        self._clock = clock
        self._margin = refresh_margin
        self._undated_ttl = undated_ttl
        self._provider: Any = None
        self._cached: Credentials | None = None
        self._fresh_until = 0.0
        self._lock = threading.Lock()

    def get(self) -> Credentials:
        """Credentials good for at least the refresh margin (when their expiry is known)."""
        with self._lock:
            now = self._clock()
            if self._cached is not None and now < self._fresh_until:
                return self._cached
            try:
                found = self._load()
            except CredentialsError:
                cached = self._cached
                if cached is not None and cached.expires_at is not None and now < cached.expires_at:
                    logger.warning(
                        "refreshing credentials failed; using the cached ones for %d s more",
                        cached.expires_at - now,
                    )
                    return cached
                raise
            if found.expires_at is None:
                self._fresh_until = now + self._undated_ttl
            else:
                self._fresh_until = found.expires_at - self._margin
                logger.debug("credentials from the chain expire in %d s", found.expires_at - now)
            self._cached = found
            return found

    def _load(self) -> Credentials:
        logger.debug("no AccessKey in the environment; asking the default credentials chain")
        try:
            if self._provider is None:
                self._provider = self._factory()
            found = self._provider.get_credentials()
            key_id, key_secret = found.get_access_key_id(), found.get_access_key_secret()
            token = found.get_security_token()
            get_expiration = getattr(found, "get_expiration", None)
            expiration = get_expiration() if callable(get_expiration) else None
        except Exception as exc:
            raise CredentialsError(
                "no Alibaba Cloud credentials found: set ALIBABA_CLOUD_ACCESS_KEY_ID and "
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET, or configure a profile or RAM role for the "
                f"default credentials chain ({type(exc).__name__}: "
                f"{REDACTOR.scrub(str(exc))[:300]})"
            ) from None
        if not key_id or not key_secret:
            raise CredentialsError("the default credentials chain returned an empty AccessKey")
        return Credentials(
            key_id,
            Secret(key_secret),
            Secret(token) if token else None,
            float(expiration) if isinstance(expiration, (int, float)) and expiration > 0 else None,
        )


# One chain per instance: a warm instance reuses what it fetched while it is fresh.
DEFAULT_CHAIN = CredentialsChain()


def resolve_credentials(
    access_key: AccessKey | None, chain: CredentialsChain | None = None
) -> Credentials:
    """Credentials for the next request: the environment's, else the (cached) chain's."""
    if access_key is not None:
        return Credentials(
            access_key.access_key_id, access_key.access_key_secret, access_key.security_token
        )
    return (chain or DEFAULT_CHAIN).get()
