"""Bounding an HTTP exchange as a whole: its time and the size of its answer.

``requests`` bounds each read of a socket, not the whole answer: a server that
sends one byte every few seconds, headers included, keeps a call alive for as
long as it likes. Every call the function makes runs inside ``within``, whose
watchdog shuts the connection down at a deadline for the whole exchange, on a
session that carries a ``WatchedAdapter``; and every answer is read with
``read_body``, which also stops at a size no legitimate answer reaches.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

CHUNK = 64 * 1024


class BodyError(Exception):
    """The body took too long or grew too large; the connection has been closed."""


# The connection each thread is using now, so that a watchdog can cut it.
_IN_USE: dict[int, Any] = {}


class _Watched:
    """A connection pool that notes which connection the calling thread takes."""

    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)  # type: ignore[misc]
        _IN_USE[threading.get_ident()] = conn
        return conn


class _WatchedHTTPPool(_Watched, HTTPConnectionPool):
    pass


class _WatchedHTTPSPool(_Watched, HTTPSConnectionPool):
    pass


class WatchedAdapter(HTTPAdapter):
    """An adapter whose connections ``within`` can cut from another thread."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _WatchedHTTPPool,
            "https": _WatchedHTTPSPool,
        }


def watch(session: requests.Session) -> requests.Session:
    """The session, with watched adapters for http and https unless it has them."""
    for prefix in ("http://", "https://"):
        if not isinstance(session.adapters.get(prefix), WatchedAdapter):
            session.mount(prefix, WatchedAdapter())
    return session


@contextmanager
def within(seconds: float) -> Iterator[threading.Event]:
    """Cut this thread's connection if the exchange inside takes longer than ``seconds``.

    The event it yields is set when the watchdog fired, so that the caller can
    tell a cut from any other broken connection.
    """
    thread = threading.get_ident()
    fired = threading.Event()

    def cut() -> None:
        fired.set()
        sock = getattr(_IN_USE.get(thread), "sock", None)
        if sock is not None:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    timer = threading.Timer(seconds, cut)
    timer.daemon = True
    timer.start()
    try:
        yield fired
    finally:
        timer.cancel()
        _IN_USE.pop(thread, None)


def read_body(response: requests.Response, *, seconds: float, max_bytes: int) -> bytes:
    """The whole body of a response made with ``stream=True``, or ``BodyError``.

    The body is also left in ``response.content``, so that ``.text`` and
    ``.json()`` work as usual afterwards.
    """
    deadline = time.monotonic() + seconds
    raw = response.raw
    chunks: list[bytes] = []
    size = 0
    try:
        while True:
            if time.monotonic() > deadline:
                raise BodyError(f"the answer took longer than {seconds:g} s to arrive")
            # read1 returns what has arrived (at most one socket read), so the deadline
            # is checked between reads even when the server trickles.
            chunk = raw.read1(CHUNK, decode_content=True)
            if not chunk:
                break
            size += len(chunk)
            if size > max_bytes:
                raise BodyError(f"the answer is larger than {max_bytes} bytes")
            chunks.append(chunk)
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        response.close()
        raise BodyError(
            f"the connection broke while the answer arrived ({type(exc).__name__})"
        ) from None
    except BaseException:
        response.close()
        raise
    body = b"".join(chunks)
    # NOTE: requests keeps a read body in these two attributes; setting them lets the
    # usual accessors serve the body read here.
    response._content = body
    response._content_consumed = True  # type: ignore[attr-defined]
    return body


def exchange(
    send: Callable[[], requests.Response], *, seconds: float, max_bytes: int
) -> requests.Response:
    """``send()`` (a request made with ``stream=True``) and its whole body, within ``seconds``.

    Raises ``BodyError`` when the watchdog cut the exchange or the body is too
    large; other ``requests`` errors pass through.
    """
    with within(seconds) as cut:
        try:
            response = send()
            read_body(response, seconds=seconds, max_bytes=max_bytes)
            if cut.is_set():
                # Cut mid-headers, http.client may take what came as complete.
                raise BodyError("cut")
        except (requests.RequestException, BodyError):
            if cut.is_set():
                raise BodyError(f"the answer took longer than {seconds:g} s") from None
            raise
    return response
