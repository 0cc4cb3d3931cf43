"""Keeping secrets out of logs, exceptions, ``repr`` and HTTP responses.

Two tools work together. ``Secret`` wraps a value so that printing, logging or
``repr`` of a settings object shows ``***``. ``REDACTOR`` remembers every
secret value the process has loaded and scrubs it (and its percent-encoded
form) from any text: a logging filter applies it to every record, and the run
summary passes through it before it is logged or returned.
"""

from __future__ import annotations

import logging
import re
import threading
from urllib.parse import quote, quote_plus, urlsplit

MASK = "***"

# Shorter values are too likely to occur in ordinary text to be scrubbed safely.
_MIN_SCRUB_LENGTH = 6


class Secret:
    """A string that never shows itself by accident."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        REDACTOR.register(value)

    def reveal(self) -> str:
        """The real value, for the one place that must send it."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __str__(self) -> str:
        return MASK

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class Redactor:
    """Remembers secret values and removes them from text."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lowered: tuple[str, ...] = ()
        self._lock = threading.Lock()

    def register(self, value: str) -> None:
        """Scrub this value, its URL-encoded forms and a webhook URL's secret parts from now on."""
        candidates = {value, quote(value, safe=""), quote_plus(value)}
        if "://" in value:
            parts = urlsplit(value)
            candidates.add(parts.query)
            # The last path segment is the secret part of a Slack webhook URL; a DingTalk
            # robot's path is the same for all, its access_token is the secret.
            if "access_token=" not in parts.query:
                candidates.update({parts.path, parts.path.rpartition("/")[2]})
            candidates.update(piece.partition("=")[2] for piece in parts.query.split("&"))
        with self._lock:
            self._values.update(c for c in candidates if len(c) >= _MIN_SCRUB_LENGTH)
            self._lowered = tuple({value.lower() for value in self._values})

    def scrub(self, text: str) -> str:
        """The text with every remembered secret, in any case, replaced by ``***``.

        Any case, because an error may show a value lower-cased, and a signing
        secret (SEC and lower-case hex) is then whole.
        """
        # A substring test per secret is the fast path: most text holds none.
        lowered = text.lower()
        found = [value for value in self._lowered if value in lowered]
        if not found:
            return text
        # At every position, the longest secret starting there: overlapping secrets
        # are masked together, whatever their order.
        alternatives = "|".join(map(re.escape, sorted(found, key=len, reverse=True)))
        pieces: list[str] = []
        end = 0
        for match in re.finditer(f"(?=({alternatives}))", text, re.IGNORECASE):
            start, stop = match.start(), match.start() + len(match.group(1))
            if start > end:
                pieces.extend((text[end:start], MASK))
            elif not pieces:
                pieces.append(MASK)
            end = max(end, stop)
        return "".join(pieces) + text[end:] if pieces else text

    def forget_all(self) -> None:
        """Drop every remembered value (tests only)."""
        with self._lock:
            self._values.clear()
            self._lowered = ()


REDACTOR = Redactor()


class RedactingFilter(logging.Filter):
    """Scrubs remembered secrets from a record's message and traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = REDACTOR.scrub(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = REDACTOR.scrub(record.exc_text)
        return True


def install_log_redaction() -> None:
    """Attach the redacting filter to every root handler, once, and quiet urllib3.

    urllib3 logs full request paths (webhook tokens included) at DEBUG, so its
    logger is held at WARNING whatever the root level is.
    """
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    for handler in root.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
    logging.getLogger("urllib3").setLevel(logging.WARNING)
