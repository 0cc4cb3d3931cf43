"""Alibaba Cloud credentials: the environment first, the default chain otherwise."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .config import AccessKey
from .errors import CredentialsError
from .redaction import REDACTOR, Secret

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Credentials:
    """What a signed request needs; the secret parts never print."""

    access_key_id: str
    access_key_secret: Secret
    security_token: Secret | None = None


def resolve_credentials(access_key: AccessKey | None) -> Credentials:
    """Credentials for this invocation.

    The AccessKey from the environment wins (Function Compute puts the function
    role's STS credentials there on every invocation, so they are never stale).
    Only without it is ``alibabacloud-credentials`` imported, which is slow to
    import and starts a background thread.
    """
    if access_key is not None:
        return Credentials(
            access_key.access_key_id, access_key.access_key_secret, access_key.security_token
        )

    logger.debug("no AccessKey in the environment; trying the default credentials chain")
    try:
        from alibabacloud_credentials.client import Client

        found = Client().get_credential()
    except Exception as exc:
        raise CredentialsError(
            "no Alibaba Cloud credentials found: set ALIBABA_CLOUD_ACCESS_KEY_ID and "
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET, or configure a profile or RAM role for the "
            f"default credentials chain ({type(exc).__name__}: {REDACTOR.scrub(str(exc))[:300]})"
        ) from None
    if not found.access_key_id or not found.access_key_secret:
        raise CredentialsError("the default credentials chain returned an empty AccessKey")
    token = found.security_token
    return Credentials(
        found.access_key_id, Secret(found.access_key_secret), Secret(token) if token else None
    )
