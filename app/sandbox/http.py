"""A small base for the emulators: a threaded HTTPS server per service, routes, JSON helpers.

Each service is a :class:`Service` (a route table and handlers); :class:`TLSServer` serves one
service on 127.0.0.1 with an OS-assigned port from a daemon thread. The TLS handshake runs in the
connection's own thread, so a slow client cannot stall the others.

Logging goes to the ``keyturn.sandbox`` logger: method, path, the *names* of the query
parameters (values only for a short allow-list of harmless ones) and the status. Never headers,
never bodies.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import ssl
import struct
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

if TYPE_CHECKING:
    from app.sandbox.state import SandboxState

log = logging.getLogger("keyturn.sandbox")

# query parameters whose values may appear in the log (nothing secret can be in them)
_LOGGABLE_QUERY = frozenset(
    {
        "api-version",
        "displayfilteroption",
        "sortbyoption",
        "issortascending",
        "$top",
        "maxresults",
        "authorizationid",
    }
)


class BadRequestBody(ValueError):
    """The body is not the JSON it should be."""


@dataclass
class Request:
    """One HTTP request as the handlers see it."""

    method: str
    target: str  # the raw request target (path + query), for building links; never logged as-is
    path: str  # percent-decoded path, no query
    query: dict[str, list[str]]
    headers: Message
    body: bytes
    params: dict[str, str] = field(default_factory=dict)  # route parameters

    def arg(self, name: str, *, ignore_case: bool = True) -> str | None:
        """First value of query parameter ``name`` (case-insensitive names by default, like ASP.NET)."""
        if name in self.query:
            return self.query[name][0]
        if ignore_case:
            lowered = name.lower()
            for key, values in self.query.items():
                if key.lower() == lowered:
                    return values[0]
        return None

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def json(self) -> Any:
        if not self.body:
            raise BadRequestBody("the request has no body")
        try:
            return json.loads(self.body.decode("utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BadRequestBody(f"the body is not valid JSON: {exc}") from None

    def bearer(self) -> str | None:
        auth = self.header("Authorization") or ""
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None


@dataclass
class Response:
    """What a handler returns. ``drop`` closes the connection with a reset and sends nothing."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    reason: str | None = None
    drop: bool = False


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    hdrs = {"Content-Type": "application/json; charset=utf-8"}
    hdrs.update(headers or {})
    return Response(status, body, hdrs)


def html_response(status: int, text: str, headers: dict[str, str] | None = None, reason: str | None = None) -> Response:
    hdrs = {"Content-Type": "text/html; charset=utf-8"}
    hdrs.update(headers or {})
    return Response(status, text.encode("utf-8"), hdrs, reason=reason)


def text_response(status: int, text: str, headers: dict[str, str] | None = None) -> Response:
    hdrs = {"Content-Type": "text/plain; charset=utf-8"}
    hdrs.update(headers or {})
    return Response(status, text.encode("utf-8"), hdrs)


# what an injected "malformed" fault answers: HTTP 200, a JSON content type, a body cut short
MALFORMED_BODY = b'{"keyturn-sandbox": "malformed answer (fault injection)", "value": [{"id": '


def drop_connection() -> Response:
    return Response(0, drop=True)


Handler = Callable[[Request], Response]


@dataclass
class Route:
    method: str
    template: str
    pattern: re.Pattern[str]
    handler: Handler


def compile_template(template: str, *, ignore_case: bool = False) -> re.Pattern[str]:
    """'/secrets/{name}/{version?}' -> a regex; ``{x}`` matches one non-empty segment, ``{x?}`` may be empty."""
    out = "^"
    for part in re.split(r"(\{[A-Za-z_][A-Za-z0-9_]*\??\})", template):
        if part.startswith("{") and part.endswith("}"):
            name = part[1:-1]
            if name.endswith("?"):
                out += f"(?P<{name[:-1]}>[^/]*)"
            else:
                out += f"(?P<{name}>[^/]+)"
        else:
            out += re.escape(part)
    return re.compile(out + "$", re.IGNORECASE if ignore_case else 0)


class Service:
    """A route table with request counting, safe logging and loud internal errors."""

    name = "service"

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.routes: list[Route] = []
        self.base_url = ""  # set by the server once the port is known

    def route(self, method: str, template: str, handler: Handler, *, ignore_case: bool = False) -> None:
        self.routes.append(Route(method, template, compile_template(template, ignore_case=ignore_case), handler))

    def not_found(self, req: Request) -> Response:
        return json_response(404, {"error": "not_found", "message": f"no route for {req.method} {req.path}"})

    def method_not_allowed(self, req: Request, allowed: Iterable[str]) -> Response:
        resp = json_response(405, {"error": "method_not_allowed", "message": f"{req.method} is not allowed here"})
        resp.headers["Allow"] = ", ".join(sorted(set(allowed)))
        return resp

    def internal_error(self, req: Request) -> Response:
        return json_response(500, {"error": "sandbox_internal_error", "message": "the sandbox emulator failed"})

    # -- injected network faults (SandboxState.inject_fault with a NET_FAULT_KINDS kind) ----------

    def call_names(self, req: Request, template: str) -> list[str]:
        """The names a fault can target this request by: ``"METHOD template"`` plus any the service adds."""
        return [f"{req.method} {template}"]

    def rate_limit_headers(self, seconds: int) -> dict[str, str]:
        """What this vendor sends with a 429 (Azure: ``Retry-After``; Buildkite overrides it)."""
        return {"Retry-After": str(seconds)}

    def injected_error(self, status: int, req: Request) -> Response:
        """An injected 429 / 500 / 503 in the vendor's error shape (services override the body)."""
        messages = {
            429: "Too many requests (keyturn sandbox fault injection).",
            500: "An unexpected error occurred (keyturn sandbox fault injection).",
            503: "The service is temporarily unavailable (keyturn sandbox fault injection).",
        }
        return json_response(status, {"error": "injected_fault", "message": messages.get(status, "injected fault")})

    def _injected(self, status: int, req: Request) -> Response:
        resp = self.injected_error(status, req)
        if status == 429:
            resp.headers.update(self.rate_limit_headers(int(self.state.fault_retry_after)))
        return resp

    def handle(self, req: Request) -> Response:
        """Route, apply a delay and an injected network fault, run the handler, log (no values).

        Fault timing: "reset", "429", "500" and "503" answer instead of the handler (nothing happened);
        "reset-after", "malformed" and "timeout" run the handler first (it happened), then reset, garble or
        hold the answer (the fault's hold, default ``fault_hold``: the client gave up; the answer goes nowhere);
        "late" holds the request first, then runs the handler (it happened after the client gave up), then
        closes the connection without an answer. A delay (``state.set_delay``) comes before all of them.
        """
        template = "<unmatched>"
        matched: Route | None = None
        allowed: list[str] = []
        for route in self.routes:
            m = route.pattern.match(req.path)
            if not m:
                continue
            if route.method != req.method:
                allowed.append(route.method)
                continue
            matched = route
            req.params = {k: unquote(v) for k, v in m.groupdict().items()}
            template = route.template
            break
        self.state.requests.add(self.name, req.method, template)
        try:
            names = self.call_names(req, template)
        except Exception:  # a bad body cannot name a call; the handler will say so
            names = [f"{req.method} {template}"]
        delay = self.state.delay_for(self.name, names)
        if delay:
            time.sleep(delay)  # before the handler: a slowed mint really creates its token late
        fault: str | None = None
        hold = 0.0
        if matched is not None:
            taken = self.state.take_net_fault_hold(self.name, names)
            if taken is not None:
                fault, hold = taken
        if fault == "late":
            return self._late(req, matched, template, hold)
        resp = self._run(req, matched, template, allowed, fault)
        if fault == "reset-after":
            resp = drop_connection()
        elif fault == "malformed":
            resp = Response(200, MALFORMED_BODY, {"Content-Type": "application/json; charset=utf-8"})
        elif fault == "timeout":
            time.sleep(hold)  # the handler ran; the client gave up long ago and the answer goes nowhere
        self._log(req, resp, fault)
        return resp

    def _run(self, req: Request, matched: Route | None, template: str, allowed: list[str], fault: str | None) -> Response:
        """The handler's answer (or the injected error that replaces it), then ``state.after_request``."""
        try:
            if fault == "reset":
                resp = drop_connection()
            elif fault in ("429", "500", "503"):
                resp = self._injected(int(fault), req)
            elif matched is not None:
                resp = matched.handler(req)
            elif allowed:
                resp = self.method_not_allowed(req, allowed)
            else:
                resp = self.not_found(req)
        except Exception as exc:
            self.state.record_internal_error(f"{self.name} {req.method} {template}: {exc!r}")
            log.error("%s %s %s: emulator error\n%s", self.name, req.method, template, traceback.format_exc())
            resp = self.internal_error(req)
        hook = self.state.after_request
        if hook is not None:
            try:
                hook()  # the persisted sandbox saves its world here, before the answer leaves
            except Exception:
                log.error("%s %s %s: the sandbox could not save its world\n%s", self.name, req.method, template, traceback.format_exc())
                resp = json_response(503, {"error": "sandbox_not_saved", "message": "the sandbox could not save its world"})
        return resp

    def _late(self, req: Request, matched: Route | None, template: str, hold: float) -> Response:
        """A "late" fault: hold the request, then run its handler for real; no answer (the client is gone).

        The handler only reads the request already received, so it runs whether or not the client is still
        connected; ``state.late_landed`` counts it once it has.
        """
        self.state.note_late_held()
        try:
            time.sleep(hold)
            resp = self._run(req, matched, template, [], None)
        finally:
            self.state.note_late_landed()
        status = "dropped" if resp.drop else str(resp.status)
        log.info("%s %s %s -> %s, not sent (injected late)", self.name, req.method, safe_target(req), status)
        return drop_connection()

    def _log(self, req: Request, resp: Response, fault: str | None) -> None:
        status = "dropped" if resp.drop else str(resp.status)
        log.info("%s %s %s -> %s%s", self.name, req.method, safe_target(req), status, f" (injected {fault})" if fault else "")


def safe_target(req: Request) -> str:
    """The path plus query parameter names; values only for harmless parameters."""
    if not req.query:
        return req.path
    parts = []
    for key, values in req.query.items():
        for value in values:
            parts.append(f"{key}={value}" if key.lower() in _LOGGABLE_QUERY else f"{key}=***")
    return req.path + "?" + "&".join(parts)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "keyturn-sandbox/1"
    sys_version = ""
    timeout = 60  # idle keep-alive connections end after a minute
    server: TLSServer

    def _dispatch(self) -> None:
        try:
            body = self._read_body()
        except ValueError:
            self.send_error(400, "Bad request body")
            return
        split = urlsplit(self.path)
        req = Request(
            method=self.command,
            target=self.path,
            path=unquote(split.path),
            query=parse_qs(split.query, keep_blank_values=True),
            headers=self.headers,
            body=body,
        )
        resp = self.server.service.handle(req)
        if resp.drop:
            self.close_connection = True
            try:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
            return
        self.send_response(resp.status, resp.reason)
        for key, value in resp.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(resp.body)))
        self.end_headers()
        if self.command != "HEAD" and resp.body:
            self.wfile.write(resp.body)

    def _read_body(self) -> bytes:
        if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > 10 * 1024 * 1024:
            raise ValueError("bad Content-Length")
        return self.rfile.read(length) if length else b""

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # Service.handle logs, without headers or secrets

    def log_message(self, format: str, *args: Any) -> None:
        pass  # never write to stderr (it would draw over the terminal UI)


class TLSServer(ThreadingHTTPServer):
    """One service over HTTPS on 127.0.0.1, port chosen by the OS, served from a daemon thread."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = False

    def __init__(self, service: Service, context: ssl.SSLContext) -> None:
        self.service = service
        self.context = context
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        super().__init__(("127.0.0.1", 0), _RequestHandler)
        self.port: int = self.server_address[1]
        self.url = f"https://127.0.0.1:{self.port}"
        service.base_url = self.url

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(10)
        try:
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle stall between headers and body
        except OSError:
            pass
        try:
            conn = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        with self._conn_lock:
            self._connections.add(conn)
        try:
            _RequestHandler(conn, client_address, self)
        except (ssl.SSLError, OSError):
            pass
        finally:
            with self._conn_lock:
                self._connections.discard(conn)
            try:
                conn.close()
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("%s: connection error", self.service.name, exc_info=True)

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, name=f"sandbox-{self.service.name}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout=2)
            self._thread = None
        with self._conn_lock:
            conns = list(self._connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.server_close()
