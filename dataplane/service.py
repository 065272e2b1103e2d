"""What every data-plane program shares: address options, a /metrics + JSON control server, clean exit."""

from __future__ import annotations

import argparse
import errno
import json
import signal
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, disable_created_metrics, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

disable_created_metrics()  # the *_created series only add noise to every scrape

Handler = Callable[[dict[str, Any] | None], dict[str, Any]]
"""A control endpoint: gets the POSTed JSON object (None on GET) and returns a JSON object."""


def address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` -> (host, port), for argparse ``type=``."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def base_parser(description: str) -> argparse.ArgumentParser:
    """A parser with the options every program has: ``--slice`` and ``--mgmt``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--slice", default="embb", help="slice this program serves (metric label)")
    parser.add_argument("--mgmt", type=address, required=True,
                        help="HOST:PORT of the management address: GET /metrics and the JSON control endpoints")
    return parser


class ControlServer:
    """HTTP on the management address: ``GET /metrics`` and JSON endpoints ``GET|POST /<name>``."""

    def __init__(self, bind: tuple[str, int], endpoints: dict[str, Handler],
                 registry: CollectorRegistry = REGISTRY) -> None:
        outer = self

        class RequestHandler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/metrics":
                    self._reply(200, generate_latest(registry), CONTENT_TYPE_LATEST)
                else:
                    self._json(None)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except json.JSONDecodeError as exc:
                    self._reply(400, json.dumps({"error": f"body is not JSON: {exc}"}).encode())
                    return
                if not isinstance(body, dict):
                    self._reply(400, b'{"error": "body must be a JSON object"}')
                    return
                self._json(body)

            def _json(self, body: dict[str, Any] | None) -> None:
                handler = outer.endpoints.get(self.path.strip("/"))
                if handler is None:
                    self._reply(404, json.dumps({"error": f"no endpoint {self.path}",
                                                 "endpoints": sorted(outer.endpoints)}).encode())
                    return
                try:
                    result = handler(body)
                except (ValueError, TypeError, KeyError) as exc:
                    self._reply(400, json.dumps({"error": str(exc)}).encode())
                    return
                self._reply(200, json.dumps(result).encode())

            def _reply(self, status: int, payload: bytes, content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:  # quiet: scraped every second
                return

        self.endpoints = endpoints
        try:
            self.server = ThreadingHTTPServer(bind, RequestHandler)
        except OSError as exc:
            raise SystemExit(_bind_failure("management", bind, exc)) from None
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="control", daemon=True)

    def start(self) -> ControlServer:
        self.thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def udp_socket(bind: tuple[str, int] | None = None, receive_buffer: int = 0, what: str = "data",
               device: str | None = None) -> socket.socket:
    """A UDP socket, bound to ``bind`` when given (and to network interface ``device``: it then sends and receives
    through that interface only, whatever the routes say); a bind failure ends the program with one clear line."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if receive_buffer:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    if device is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, device.encode())
        except OSError as exc:
            sock.close()
            raise SystemExit(f"cannot bind the {what} socket to interface {device} ({exc.strerror}); it needs the "
                             "interface to exist and CAP_NET_RAW") from None
    if bind is not None:
        try:
            sock.bind(bind)
        except OSError as exc:
            sock.close()
            raise SystemExit(_bind_failure(what, bind, exc)) from None
    return sock


def _bind_failure(what: str, bind: tuple[str, int], exc: OSError) -> str:
    hint = ("another program uses it: stop that program or choose another port" if exc.errno == errno.EADDRINUSE
            else "the address is not configured in this namespace: is the testbed up?")
    return f"cannot listen on {what} address {bind[0]}:{bind[1]} ({exc.strerror}); {hint}"


def stop_event() -> threading.Event:
    """An event set on SIGTERM or SIGINT: the main loop runs until it is set."""
    event = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: event.set())
    return event
