"""A real Prometheus (Debian's /usr/bin/prometheus) and exporters for tests: a prometheus_client one, and one
that serves exposition-format text the test writes (a function of how often it was scraped, so counters grow by
a fixed step per scrape, whatever the machine's load does to the moment of each answer).

All bind to free 127.0.0.1 ports; Prometheus scrapes the exporters every second and keeps its data in a
temporary directory. Prometheus is started and stopped by PID, never by name, and can be stopped and
restarted on the same port and storage (to test outages).
"""

from __future__ import annotations

import itertools
import signal
import subprocess
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Protocol

import requests
from helpers import free_port, wait_until_ready
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from core.retry import Attempts

PROMETHEUS = Path("/usr/bin/prometheus")


class Exporter:
    """A prometheus_client HTTP exporter with one gauge, ``slicebed_test_value``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.gauge = Gauge("slicebed_test_value", "a value the test sets", ["slice"], registry=self.registry)
        self.port = free_port()
        self.server, self.thread = start_http_server(self.port, addr="127.0.0.1", registry=self.registry)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class TextExporter:
    """An HTTP server on loopback whose ``/metrics`` is ``text(n)`` in the exposition format, ``n`` counting the
    scrapes (1, 2, ...): Prometheus scrapes every second, so a counter ``rate * n`` grows by ``rate`` per second."""

    def __init__(self, text: Callable[[int], str]) -> None:
        scrapes = itertools.count(1)

        class Metrics(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = text(next(scrapes)).encode() if self.path == "/metrics" else b""
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:  # no request log on stderr
                return

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Metrics)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class ScrapeTarget(Protocol):
    port: int


class PrometheusProcess:
    """One Prometheus process scraping ``exporter`` (and any ``more`` targets) every second, on a free port with
    its own storage."""

    def __init__(self, directory: Path, exporter: ScrapeTarget, *more: ScrapeTarget) -> None:
        self.directory = directory
        self.exporter = exporter
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = directory / "prometheus.yml"
        targets = ", ".join(f"'127.0.0.1:{target.port}'" for target in (exporter, *more))
        self.config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: slicebed-test\n    static_configs:\n"
            f"      - targets: [{targets}]\n", encoding="utf-8")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start Prometheus and wait until it is ready (a few tenths of a second)."""
        log_path = self.directory / "prometheus.log"
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(PROMETHEUS), f"--config.file={self.config}", f"--storage.tsdb.path={self.directory / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                stdout=log, stderr=log, start_new_session=True)
        wait_until_ready(self.ready, self.process, f"prometheus on {self.url}", timeout_s=20, log=log_path)

    def ready(self) -> bool:
        """Prometheus answers its readiness endpoint."""
        try:
            return requests.get(f"{self.url}/-/ready", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> None:
        """Stop Prometheus by its PID (SIGTERM, then SIGKILL after 10 s)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def wait_for_samples(self, query: str, count: int, timeout_s: float = 30) -> None:
        """Block until ``count_over_time(query[1h])`` reaches ``count`` (scrapes have happened)."""
        for _ in Attempts(timeout_s, 0.2):
            answer = requests.get(f"{self.url}/api/v1/query", params={"query": f"count_over_time({query}[1h])"},
                                  timeout=2).json()["data"]["result"]
            if answer and float(answer[0]["value"][1]) >= count:
                return
        raise RuntimeError(f"prometheus on {self.url} has not scraped {count} samples of {query} in {timeout_s} s")
