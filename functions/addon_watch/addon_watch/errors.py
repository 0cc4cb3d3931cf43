"""Errors raised by ack-addon-watch.

Every error the package raises on purpose derives from ``AddonWatchError``::

    AddonWatchError
    ├── ConfigError          a setting is missing or malformed
    ├── EventError           the invocation event cannot be understood
    ├── CredentialsError     no usable Alibaba Cloud credentials
    ├── AckApiError          the ACK OpenAPI answered with an error or garbage
    │   ├── AckTransientError    throttled, 5xx, timeout, reset: worth asking again
    │   ├── AckPermanentError    refused for good: cluster gone, RAM denied, bad signature
    │   └── AckMalformedError    an answer that is not the JSON expected (HTML, truncated)
    ├── StateStoreError      the state store cannot be read or written
    ├── TemplateError        a message template failed to load or render
    └── DeliveryError        a webhook did not accept a message

Messages say what was tried, what came back and what to check. They never
contain a secret: webhook URLs and tokens, signing secrets, AccessKey secrets
and STS tokens are left out or redacted before an error is built.
"""

from __future__ import annotations


class AddonWatchError(Exception):
    """Base of every error raised on purpose by ack-addon-watch."""


class ConfigError(AddonWatchError):
    """A setting is missing or malformed; nothing was called."""


class EventError(AddonWatchError):
    """The invocation event is not one the function understands."""


class CredentialsError(AddonWatchError):
    """No Alibaba Cloud credentials could be found or loaded."""


class AckApiError(AddonWatchError):
    """The ACK OpenAPI returned an error, or an answer that cannot be parsed.

    ``retry_after`` is the wait in seconds the API asked for (when throttling), if it asked.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        http_status: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.http_status = http_status
        self.request_id = request_id
        self.retry_after = retry_after


class AckTransientError(AckApiError):
    """Throttled, a 5xx, a timeout or a dropped connection: the same call may succeed later."""


class AckPermanentError(AckApiError):
    """The API refused the call in a way asking again cannot fix (missing cluster, RAM, key)."""


class AckMalformedError(AckApiError):
    """The API (or a gateway before it) answered with something that is not the JSON expected."""


class StateStoreError(AddonWatchError):
    """The state store could not be opened, read or written."""


class TemplateError(AddonWatchError):
    """A message template could not be loaded or rendered."""


class DeliveryError(AddonWatchError):
    """A webhook refused a message or could not be reached.

    ``permanent`` is true when sending the same message again cannot succeed
    without a change of configuration (revoked webhook, bad signing secret).
    ``retry_after`` is set when the destination throttles: the seconds to wait
    before the next message, which must not be sent sooner. ``ambiguous`` is
    true when the request was sent and no answer came (a read timeout, a
    connection dropped after sending): the message may have been delivered.
    """

    def __init__(
        self,
        message: str,
        *,
        channel: str,
        permanent: bool = False,
        retry_after: float | None = None,
        ambiguous: bool = False,
    ) -> None:
        super().__init__(message)
        self.channel = channel
        self.permanent = permanent
        self.retry_after = retry_after
        self.ambiguous = ambiguous
