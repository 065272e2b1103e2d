"""The Prometheus reader against a real Prometheus (Debian's binary) scraping a prometheus_client exporter."""

from __future__ import annotations

import socket
import threading
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from prometheus_process import PrometheusProcess, free_port

from collectors.prometheus import (
    MAX_POINTS_PER_SERIES,
    PrometheusQueryError,
    PrometheusReader,
    PrometheusUnavailable,
    RetryPolicy,
    chunk_bounds,
)
from core.errors import InputError

pytestmark = pytest.mark.slow
EPOCH = pd.Timestamp(0, tz="UTC")


def epoch_ms(frame: pd.DataFrame) -> np.ndarray:
    """The frame's times as whole milliseconds since 1970 (whatever the datetime resolution)."""
    return ((frame["time"] - EPOCH) / pd.Timedelta(1, "ms")).round().astype("int64").to_numpy()


def test_instant_query_returns_the_scraped_value_with_labels(prometheus: PrometheusProcess) -> None:
    prometheus.exporter.gauge.labels(slice="embb").set(7.5)
    prometheus.wait_for_samples("slicebed_test_value", 2)
    with PrometheusReader(prometheus.url) as reader:
        frame = reader.instant('slicebed_test_value{slice="embb"}')
    assert list(frame["value"]) == [7.5]
    assert frame.loc[0, "slice"] == "embb" and frame.loc[0, "job"] == "slicebed-test"
    assert frame["time"].dt.tz is not None


def test_range_query_follows_the_exporter(prometheus: PrometheusProcess) -> None:
    gauge = prometheus.exporter.gauge.labels(slice="urllc")
    gauge.set(1.0)
    prometheus.wait_for_samples('slicebed_test_value{slice="urllc"}', 3)
    gauge.set(2.0)
    time.sleep(2.5)
    end = datetime.now(UTC)
    with PrometheusReader(prometheus.url) as reader:
        frame = reader.range('slicebed_test_value{slice="urllc"}', end - timedelta(seconds=5), end, 1)
    assert set(frame["value"]) == {1.0, 2.0}
    assert frame["value"].is_monotonic_increasing  # 1 before 2: rows come in time order


def test_a_long_range_is_chunked_and_stitched_without_gap_or_duplicate(prometheus: PrometheusProcess) -> None:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    end = start + timedelta(days=1)
    requests_made = []
    with PrometheusReader(prometheus.url) as reader:
        original = reader._client.custom_query_range

        def counting(*args: object, **kwargs: object) -> object:
            requests_made.append(kwargs["params"])
            return original(*args, **kwargs)

        reader._client.custom_query_range = counting  # type: ignore[method-assign]
        frame = reader.range("time()", start, end, 1)  # time(): a value at every step of any window
    assert len(requests_made) == -(-86_401 // MAX_POINTS_PER_SERIES) == 8
    assert len(frame) == 86_401
    seconds = epoch_ms(frame) // 1000
    assert (np.diff(seconds) == 1).all()
    assert seconds[0] == int(start.timestamp()) and seconds[-1] == int(end.timestamp())
    np.testing.assert_array_equal(frame["value"].to_numpy(), seconds.astype(float))


def test_prometheus_itself_refuses_an_unchunked_long_range(prometheus: PrometheusProcess) -> None:
    """The 11,000-point cap is real: one request for 86,401 points is refused (and not retried)."""
    start = datetime(2026, 11, 1, tzinfo=UTC)
    sleeps: list[float] = []
    with PrometheusReader(prometheus.url, sleep=sleeps.append) as reader, \
            pytest.raises(PrometheusQueryError, match="exceeded maximum resolution"):
        reader._range_chunk("time()", start.timestamp(), start.timestamp() + 86_400, 1)
    assert sleeps == []


def test_fractional_steps_and_small_chunks_tile_the_range(prometheus: PrometheusProcess) -> None:
    start = datetime(2026, 11, 1, 0, 0, 0, 250_000, tzinfo=UTC)
    end = start + timedelta(seconds=10)
    with PrometheusReader(prometheus.url, max_points=7) as reader:
        frame = reader.range("time()", start, end, 0.25)
    milliseconds = epoch_ms(frame)
    assert len(frame) == 41
    assert (np.diff(milliseconds) == 250).all()
    np.testing.assert_allclose(frame["value"].to_numpy(), milliseconds / 1000)


@pytest.mark.parametrize(("start", "end", "step", "limit"), [
    (0.0, 100.0, 1.0, 11_000), (0.0, 100.0, 1.0, 7), (5.5, 5.5, 0.5, 3), (0.0, 99.9, 0.3, 10),
    (1e9, 1e9 + 3600, 0.1, 1000),
])
def test_chunk_bounds_cover_every_grid_point_exactly_once(start: float, end: float, step: float, limit: int) -> None:
    chunks = chunk_bounds(start, end, step, limit)
    expected = np.arange(int(np.floor((end - start) / step + 1e-9)) + 1)
    covered = np.concatenate([np.rint((np.arange(first, last + step / 2, step) - start) / step)
                              for first, last in chunks])
    np.testing.assert_array_equal(covered, expected)
    assert all(round((last - first) / step) + 1 <= limit for first, last in chunks)


@pytest.mark.parametrize(("start", "end", "step"), [(10.0, 5.0, 1.0), (0.0, 5.0, 0.0), (0.0, 5.0, float("nan"))])
def test_chunk_bounds_reject_a_bad_range(start: float, end: float, step: float) -> None:
    with pytest.raises(InputError, match="Prometheus range"):
        chunk_bounds(start, end, step)


def test_a_down_prometheus_is_retried_with_backoff_then_one_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there: connection refused
    sleeps: list[float] = []
    reader = PrometheusReader(url, retry=RetryPolicy(attempts=5, initial_delay_s=0.5, max_delay_s=2.0),
                              sleep=sleeps.append)
    with pytest.raises(PrometheusUnavailable) as caught:
        reader.instant("up")
    assert sleeps == [0.5, 1.0, 2.0, 2.0]
    message = str(caught.value)
    assert url in message and "5 attempt(s)" in message and "ConnectionError" in message and "\n" not in message


def test_the_retry_budget_bounds_the_total_wait() -> None:
    sleeps: list[float] = []
    reader = PrometheusReader(f"http://127.0.0.1:{free_port()}",
                              retry=RetryPolicy(attempts=50, initial_delay_s=1, max_delay_s=8, budget_s=10),
                              sleep=sleeps.append)
    with pytest.raises(PrometheusUnavailable):
        reader.instant("up")
    assert sleeps == [1, 2, 4]  # the next pause (8 s) would pass the 10 s budget


def test_a_silent_server_times_out_and_is_retried() -> None:
    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        reader = PrometheusReader(url, timeout_s=0.3, retry=RetryPolicy(attempts=2, initial_delay_s=0.01))
        with pytest.raises(PrometheusUnavailable, match="Timeout"):
            reader.instant("up")


def test_a_prometheus_restarted_during_the_retries_answers(prometheus: PrometheusProcess) -> None:
    prometheus.stop()
    restart = threading.Timer(1.0, prometheus.start)
    restart.start()
    try:
        with PrometheusReader(prometheus.url, retry=RetryPolicy(attempts=10, initial_delay_s=0.2)) as reader:
            frame = reader.instant("vector(42)")
    finally:
        restart.join()
    assert list(frame["value"]) == [42.0]


def test_bad_promql_is_a_query_error_without_retries(prometheus: PrometheusProcess) -> None:
    sleeps: list[float] = []
    with PrometheusReader(prometheus.url, sleep=sleeps.append) as reader, \
            pytest.raises(PrometheusQueryError, match=r"refused query 'rate\(\(': HTTP 400") as caught:
        reader.instant("rate((")
    assert sleeps == [] and "\n" not in str(caught.value)


def test_an_empty_answer_is_an_empty_frame(prometheus: PrometheusProcess) -> None:
    end = datetime.now(UTC)
    with PrometheusReader(prometheus.url) as reader:
        frame = reader.range("no_such_metric", end - timedelta(minutes=1), end, 1)
    assert frame.empty and list(frame.columns) == ["time", "value"]
    assert isinstance(frame["time"].dtype, pd.DatetimeTZDtype)


@pytest.mark.parametrize(("url", "problem"), [("localhost:9090", "not an http"), ("ftp://x", "not an http")])
def test_a_bad_url_is_input_error(url: str, problem: str) -> None:
    with pytest.raises(InputError, match=problem):
        PrometheusReader(url)


def test_naive_times_are_refused() -> None:
    reader = PrometheusReader(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(InputError, match="no time zone"):
        reader.range("up", datetime(2026, 1, 1), datetime(2026, 1, 2), 60)
