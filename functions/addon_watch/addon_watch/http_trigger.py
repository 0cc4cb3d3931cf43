"""The manual HTTP trigger: Function Compute 3.0 HTTP events in, JSON responses out.

Routes::

    POST /check                 run a check now and return its summary
    POST /check?dry_run=true    ask and render, return the messages; record and send nothing
    GET  /status                the last known state of every target, from the store only
    GET  /healthz               liveness; the only route that needs no credentials

Missing or wrong credentials are a 401 whatever the path (only ``/healthz`` is
open), so a caller without them cannot map the routes; then an unknown path is
a 404, a known path with the wrong method a 405 (with ``Allow``), bad input a 400. Anything
unexpected is a 500 whose body holds nothing but the request id; the details
are logged under that id.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from .config import Env, Settings
from .errors import EventError
from .redaction import REDACTOR

logger = logging.getLogger(__name__)

ROUTES: dict[str, tuple[str, ...]] = {
    "/check": ("POST",),
    "/status": ("GET",),
    "/healthz": ("GET",),
}
PUBLIC_ROUTES = frozenset({"/healthz"})
_TRUE = frozenset({"", "1", "true", "yes"})
_FALSE = frozenset({"0", "false", "no"})


@dataclass(frozen=True)
class HttpRequest:
    """One HTTP request as Function Compute hands it over, normalised."""

    method: str
    path: str
    raw_path: str
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    body_text: str = ""
    body_is_base64: bool = False
    request_id: str = ""
    source_ip: str = ""

    def header(self, name: str) -> str | None:
        """A header's value, whatever the case of its name; repeated values joined by commas."""
        return self.headers.get(name.lower())

    def body(self) -> bytes:
        """The body, base64-decoded when the event says it is encoded."""
        if not self.body_is_base64:
            return self.body_text.encode("utf-8")
        try:
            return base64.b64decode(self.body_text, validate=True)
        except (binascii.Error, ValueError):
            raise EventError(
                "the request body is marked as base64 (isBase64Encoded) but is not valid base64"
            ) from None

    def json_body(self) -> dict[str, Any]:
        """The body as a JSON object; an empty body is an empty object."""
        raw = self.body()
        if not raw.strip():
            return {}
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise EventError(
                f"the request body is not JSON ({type(exc).__name__}); "
                'send a JSON object such as {"targets": ["c0123/metrics-server"]}, or nothing'
            ) from None
        except RecursionError:
            raise EventError(
                "the request body is JSON nested too deeply to read; "
                'send a JSON object such as {"targets": ["c0123/metrics-server"]}, or nothing'
            ) from None
        if not isinstance(data, dict):
            raise EventError(
                f"the request body is a JSON {type(data).__name__}; expected an object such as "
                '{"targets": ["c0123/metrics-server"]}'
            )
        return data


def _joined(raw: object, what: str, separator: str, *, lower: bool) -> dict[str, str]:
    """A name-to-text map; repeated names (in any case, when ``lower``) and lists joined."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise EventError(f"the HTTP event's {what} is a {type(raw).__name__}; expected an object")
    joined: dict[str, str] = {}
    for name, value in raw.items():
        key = str(name).lower() if lower else str(name)
        text = separator.join(map(str, value)) if isinstance(value, list) else str(value)
        joined[key] = f"{joined[key]}{separator}{text}" if key in joined else text
    return joined


def parse_request(event: Mapping[str, Any], request_id: str) -> HttpRequest:
    """The request inside an FC 3.0 HTTP trigger event.

    Raises:
        EventError: when the event lacks the method or the path.
    """
    raw_context = event.get("requestContext")
    context: dict[str, Any] = raw_context if isinstance(raw_context, dict) else {}
    http = context.get("http")
    if not isinstance(http, dict) or not isinstance(http.get("method"), str):
        raise EventError("the HTTP event has no requestContext.http.method")
    raw_path = event.get("rawPath")
    if not isinstance(raw_path, str) or not raw_path.startswith("/"):
        raise EventError("the HTTP event has no rawPath starting with '/'")
    # rawPath is percent-encoded; requestContext.http.path is the decoded form.
    path = http.get("path")
    body = event.get("body")
    return HttpRequest(
        method=http["method"].upper(),
        path=path if isinstance(path, str) and path else unquote(raw_path),
        raw_path=raw_path,
        headers=_joined(event.get("headers"), "headers", ", ", lower=True),
        query=_joined(event.get("queryParameters"), "queryParameters", ",", lower=False),
        body_text=body if isinstance(body, str) else "",
        body_is_base64=event.get("isBase64Encoded") is True,
        request_id=str(context.get("requestId") or request_id),
        source_ip=str(http.get("sourceIp") or ""),
    )


def response(
    status: int, data: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """An FC HTTP response with a JSON body; secrets are scrubbed from it on the way out."""
    return {
        "statusCode": status,
        "headers": {
            "Content-Type": "application/json; charset=utf-8",
            "Cache-Control": "no-store",
            **(headers or {}),
        },
        "body": REDACTOR.scrub(json.dumps(data, ensure_ascii=False, sort_keys=True)),
        "isBase64Encoded": False,
    }


def refusal(settings: Settings, request: HttpRequest) -> str | None:
    """Why this caller may not call, or None when it may. Fails closed."""
    if settings.http_auth == "function":
        # The trigger's authType is 'function': FC has verified the signature already.
        return None
    if settings.http_token is None:
        return f"{Env.HTTP_AUTH} is 'token' but {Env.HTTP_TOKEN} is not set"
    scheme, _, credential = (request.header("authorization") or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        return "no 'Authorization: Bearer' header"
    expected = settings.http_token.reveal().encode("utf-8")
    if not hmac.compare_digest(credential.strip().encode("utf-8"), expected):
        return "wrong bearer token"
    return None


def parse_flag(request: HttpRequest, name: str) -> bool:
    """A yes/no query parameter; absent is no."""
    value = request.query.get(name)
    if value is None:
        return False
    if "," in value:
        raise EventError(f"the query parameter {name} is given more than once")
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    shown = REDACTOR.scrub(value)[:20]
    raise EventError(f"the query parameter {name} is {shown!r}; expected true or false")


@dataclass(frozen=True)
class Actions:
    """What the routes do, supplied by the handler."""

    settings: Callable[[], Settings]
    check: Callable[[Settings, Mapping[str, Any], bool], dict[str, Any]]
    status: Callable[[Settings], dict[str, Any]]


def dispatch(request: HttpRequest, actions: Actions) -> tuple[dict[str, Any], dict[str, Any]]:
    """The response to one request, and what the summary line should say about it.

    Raises:
        EventError: for bad input (the caller answers 400).
        Exception: anything else, which the caller answers with a bare 500.
    """
    # Authenticate before routing: a caller without credentials must not learn,
    # from a 404 or a 405, which routes exist. Only the public routes come first.
    settings = None
    if request.path not in PUBLIC_ROUTES:
        settings = actions.settings()
        reason = refusal(settings, request)
        if reason is not None:
            logger.warning(
                "refused %s %s from %s: %s", request.method, request.path, request.source_ip, reason
            )
            return (
                response(
                    401,
                    {"error": "unauthorized: send 'Authorization: Bearer <token>'"},
                    {"WWW-Authenticate": 'Bearer realm="ack-addon-watch"'},
                ),
                {},
            )

    allowed = ROUTES.get(request.path)
    if allowed is None:
        return response(404, {"error": f"no route {request.path}", "routes": sorted(ROUTES)}), {}
    if request.method not in allowed:
        return (
            response(
                405,
                {"error": f"{request.path} accepts {', '.join(allowed)}, not {request.method}"},
                {"Allow": ", ".join(allowed)},
            ),
            {},
        )
    if settings is None:
        # A public route, which needs nothing: /healthz.
        return response(200, {"status": "ok"}), {}

    if request.path == "/status":
        _only_query(request, ())
        return response(200, actions.status(settings)), {}
    _only_query(request, ("dry_run",))
    summary = actions.check(settings, request.json_body(), parse_flag(request, "dry_run"))
    return response(200, summary), summary


def _only_query(request: HttpRequest, accepted: tuple[str, ...]) -> None:
    unknown = sorted(set(request.query) - set(accepted))
    if unknown:
        takes = ", ".join(accepted) or "no query parameters"
        raise EventError(f"unknown query parameter {unknown[0]!r}; {request.path} accepts {takes}")
