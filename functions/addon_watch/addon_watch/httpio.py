"""Reading an HTTP answer's body within a total time and size.

``requests`` bounds each read of a socket, not the whole answer: a server that
sends one byte every few seconds keeps a call alive for as long as it likes.
Every answer the function reads goes through ``read_body``, which stops at a
deadline for the whole body and at a size no legitimate answer reaches.
"""

from __future__ import annotations

import time

import requests
import urllib3

CHUNK = 64 * 1024


class BodyError(Exception):
    """The body took too long or grew too large; the connection has been closed."""


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
