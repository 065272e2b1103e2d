"""A small threaded JSON-over-HTTP server with regex routes, the base of every contract fake."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    """What a handler sees: method, path, query (lists of values), headers and the parsed JSON body."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names in lower case
    body: Any
    match: re.Match[str] | None = None


@dataclass
class Response:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


class HttpError(Exception):
    """Raised by a handler to answer with ``status`` and a JSON error body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


Handler = Callable[[Request], Response]


class JsonServer:
    """Serves registered routes on 127.0.0.1 (a free port) from a background thread; records every request."""

    def __init__(self) -> None:
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        owner = self

        class _Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: object) -> None:
                pass

            def _serve(self) -> None:
                owner._dispatch(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        self.routes.append((method, re.compile(pattern + r"/?$"), handler))

    def error_body(self, error: HttpError) -> Any:
        """The JSON body of an error answer (each fake overrides it with its vendor's error format)."""
        return {"error": error.message}

    def authorize(self, request: Request) -> None:
        """Raise :class:`HttpError` unless the request is authorized (each fake overrides it)."""

    def start(self) -> JsonServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (a second call does nothing)."""
        if self.thread.is_alive():
            self.server.shutdown()
            self.thread.join()
        self.server.server_close()

    def __enter__(self) -> JsonServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _dispatch(self, raw: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(raw.path)
        length = int(raw.headers.get("Content-Length") or 0)
        data = raw.rfile.read(length) if length else b""
        try:
            body = json.loads(data) if data else None
        except json.JSONDecodeError:
            self._send(raw, Response(400, {"error": "body is not JSON"}))
            return
        headers = {name.lower(): value for name, value in raw.headers.items()}
        request = Request(raw.command, parts.path, parse_qs(parts.query), headers, body)
        with self.lock:
            self.requests.append(request)
            try:
                self.authorize(request)
                response = self._route(request)
            except HttpError as error:
                response = Response(error.status, self.error_body(error))
        self._send(raw, response)

    def _route(self, request: Request) -> Response:
        allowed = False
        for method, pattern, handler in self.routes:
            match = pattern.match(request.path)
            if match is None:
                continue
            if method != request.method:
                allowed = True
                continue
            request.match = match
            return handler(request)
        raise HttpError(405 if allowed else 404, f"{request.method} {request.path} is not served")

    @staticmethod
    def _send(raw: BaseHTTPRequestHandler, response: Response) -> None:
        payload = b"" if response.body is None else json.dumps(response.body).encode()
        raw.send_response(response.status)
        raw.send_header("Content-Type", response.content_type)
        raw.send_header("Content-Length", str(len(payload)))
        for name, value in response.headers.items():
            raw.send_header(name, value)
        raw.end_headers()
        if raw.command != "HEAD":
            raw.wfile.write(payload)
