"""Reading Prometheus: instant and range queries as pandas frames, chunked and retried.

Built on prometheus-api-client. A range query is split into requests of at most
``MAX_POINTS_PER_SERIES`` evaluation steps (Prometheus refuses more than 11,000 points per series in one
``query_range``); the chunks tile the range on the step grid ``start + k * step`` with no overlap, so
the stitched frame has neither gaps nor duplicates. Connection errors, timeouts, HTTP 429 and 5xx are
retried with exponential backoff within a bounded time budget, then end in one
:class:`PrometheusUnavailable` line naming the URL and what to check.

Frames are long: one row per (series, timestamp) with ``time`` (UTC), ``value`` (float) and one column
per label of the series (``__name__``, ``instance``, ``job``, ...).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import pandas as pd
import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from core.errors import InputError, SlicebedError
from core.retry import Attempts

MAX_POINTS_PER_SERIES = 11_000
"""Prometheus' hard limit on the points of one series in a single ``query_range`` answer."""
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
DEFAULT_URL = "http://127.0.0.1:9090"

T = TypeVar("T")


class PrometheusUnavailable(SlicebedError):
    """Prometheus did not answer (down, unreachable, overloaded) within the retry budget."""


class PrometheusQueryError(InputError):
    """Prometheus refused a query (bad PromQL, bad range): retrying would not help."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: ``initial_delay_s``, doubling up to ``max_delay_s``, at most ``attempts`` requests
    within ``budget_s`` in all (see :class:`core.retry.Attempts`)."""

    attempts: int = 6
    initial_delay_s: float = 0.25
    max_delay_s: float = 4.0
    budget_s: float = 20.0


def prometheus_ready(url: str, timeout_s: float = 2.0) -> bool:
    """Whether the Prometheus at ``url`` answers its readiness endpoint (``/-/ready``) with 200."""
    try:
        return requests.get(f"{url.rstrip('/')}/-/ready", timeout=timeout_s).status_code == 200
    except requests.RequestException:
        return False


def chunk_bounds(start: float, end: float, step_s: float,
                 max_points: int = MAX_POINTS_PER_SERIES) -> list[tuple[float, float]]:
    """Split the step grid ``start, start + step, ... <= end`` into (first, last) pairs of <= ``max_points`` each.

    Every grid point lies in exactly one pair, so stitched chunk answers have no gap and no duplicate.
    """
    if not (math.isfinite(start) and math.isfinite(end)) or end < start:
        raise InputError(f"Prometheus range: end ({end}) must not be before start ({start})")
    if not math.isfinite(step_s) or step_s <= 0:
        raise InputError(f"Prometheus range: step must be > 0 seconds, got {step_s}")
    if max_points < 1:
        raise InputError(f"Prometheus range: max_points must be >= 1, got {max_points}")
    total = math.floor((end - start) / step_s + 1e-9) + 1
    return [(start + first * step_s, start + (min(first + max_points, total) - 1) * step_s)
            for first in range(0, total, max_points)]


class PrometheusReader:
    """Queries one Prometheus server, retrying transient failures and chunking long ranges."""

    def __init__(self, url: str = DEFAULT_URL, timeout_s: float = 10.0, retry: RetryPolicy | None = None,
                 max_points: int = MAX_POINTS_PER_SERIES, sleep: Callable[[float], None] = time.sleep) -> None:
        if not re.match(r"^https?://[^/\s]+", url):
            raise InputError(f"Prometheus URL {url!r} is not an http(s) URL; give e.g. {DEFAULT_URL}")
        if not 1 <= max_points <= MAX_POINTS_PER_SERIES:
            raise InputError(f"max_points must be within [1, {MAX_POINTS_PER_SERIES}], got {max_points}")
        self.url = url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self.max_points = max_points
        self._sleep = sleep
        # retries are ours (bounded, with a clear final error): the client's own adapter must not retry
        self._client = PrometheusConnect(url=self.url, timeout=timeout_s, retry=Retry(total=0, raise_on_status=False))

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> PrometheusReader:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def instant(self, query: str, at: datetime | None = None) -> pd.DataFrame:
        """The value of ``query`` at ``at`` (default: now), one row per series."""
        params = {"time": f"{_seconds(at):.3f}"} if at is not None else {}
        result = self._call(query, lambda: self._client.custom_query(query, params=params))
        return _frame([(entry["metric"], [entry["value"]]) for entry in result if "value" in entry])

    def range(self, query: str, start: datetime, end: datetime, step_s: float) -> pd.DataFrame:
        """``query`` evaluated every ``step_s`` seconds over [start, end], stitched from chunked requests."""
        frames = [self._range_chunk(query, first, last, step_s)
                  for first, last in chunk_bounds(_seconds(start), _seconds(end), step_s, self.max_points)]
        frames = [frame for frame in frames if not frame.empty]
        if not frames:
            return _frame([])
        return pd.concat(frames, ignore_index=True).sort_values(["time"], kind="stable", ignore_index=True)

    def _range_chunk(self, query: str, first: float, last: float, step_s: float) -> pd.DataFrame:
        # the client rounds start/end to whole seconds; exact (millisecond) bounds go in params, which win
        params = {"start": f"{first:.3f}", "end": f"{last:.3f}"}
        moment = datetime.fromtimestamp(first, UTC)
        result = self._call(query, lambda: self._client.custom_query_range(
            query, start_time=moment, end_time=moment, step=f"{step_s:g}", params=params))
        return _frame([(entry["metric"], entry["values"]) for entry in result])

    def _call(self, query: str, request: Callable[[], T]) -> T:
        """Run ``request``, retrying transient failures with backoff within the policy's budget."""
        policy = self.retry
        attempts = Attempts(policy.budget_s, policy.initial_delay_s, backoff=2, max_pause_s=policy.max_delay_s,
                            max_attempts=policy.attempts, sleep=self._sleep)
        for _ in attempts:
            try:
                return request()
            except (requests.ConnectionError, requests.Timeout) as exc:
                problem = _describe_connection_error(exc)
            except PrometheusApiClientException as exc:
                status, detail = _status_and_detail(str(exc))
                if status not in RETRYABLE_STATUS:
                    raise PrometheusQueryError(f"Prometheus at {self.url} refused query {query!r}: HTTP {status}: "
                                               f"{detail}") from None
                problem = f"HTTP {status}: {detail}"
        raise PrometheusUnavailable(
            f"Prometheus at {self.url} did not answer after {attempts.count} attempt(s) in {attempts.spent_s:.1f} s "
            f"({problem}); check that Prometheus runs and listens there (or pass the right URL)")


def _seconds(moment: datetime) -> float:
    if moment.tzinfo is None:
        raise InputError(f"Prometheus query time {moment.isoformat()} has no time zone; give an aware (UTC) time")
    return moment.timestamp()


def _describe_connection_error(error: requests.RequestException) -> str:
    """``ConnectionError: NewConnectionError`` (refused), ``ConnectionError: ReadTimeoutError`` (silent), ..."""
    reason = getattr(error.args[0], "reason", None) if error.args else None
    return f"{type(error).__name__}: {type(reason).__name__}" if reason is not None else type(error).__name__


def _status_and_detail(message: str) -> tuple[int, str]:
    """The HTTP status and Prometheus' ``error`` text from a prometheus-api-client exception message."""
    status = re.search(r"HTTP Status Code (\d+)", message)
    detail = re.search(r'"error":"((?:[^"\\]|\\.)*)"', message)
    return (int(status.group(1)) if status else 0,
            detail.group(1) if detail else message.splitlines()[0][:200])


def _frame(series: list[tuple[dict[str, Any], list[list[Any]]]]) -> pd.DataFrame:
    """Rows (labels..., time, value) from Prometheus ``[labels, [[ts, "value"], ...]]`` pairs."""
    rows = [{**labels, "time": float(stamp), "value": float(value)}
            for labels, values in series for stamp, value in values]
    frame = pd.DataFrame(rows, columns=None if rows else ["time", "value"])
    milliseconds = (frame["time"].astype("float64") * 1000).round().astype("int64")  # Prometheus' resolution
    frame["time"] = pd.to_datetime(milliseconds, unit="ms", utc=True)
    frame["value"] = frame["value"].astype("float64")
    return frame
