"""``slicebed testbed top``: the rendering of a built snapshot (no server), and the query part and the command
against a real Prometheus scraping two real HTTP exporters on loopback that serve fixed exposition text (one
stands for the embb slice's RAN emulator, one for every other program)."""

from __future__ import annotations

import io
import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from helpers import REPO, assert_one_error_line, free_port, lab_example_on_loopback, run_cli, set_dotted, write_file
from local_testbed import write_local_inventory
from prometheus_process import PrometheusProcess, TextExporter
from rich.console import Console
from rich.text import Text

from collectors.prometheus import PrometheusReader
from controller.cli.testbed_top import TOP_RETRY, prometheus_url, watch
from controller.monitor.snapshot import DEFAULT_RATE_WINDOW_S, Scales, SharedView, SliceView, TopSnapshot, read_snapshot
from controller.monitor.view import COLUMNS, render, shared_cells, slice_cells

RAN_CPU_S_PER_S = 0.25
"""The embb RAN emulator's CPU: 250 host millicores."""
OTHER_CPU_S_PER_S = 0.9
"""Every other program's CPU (the same metric name on another target): must not count as the RAN's."""
RAN_RECEIVED_PPS, RAN_SENT_PPS, PAYLOAD_BYTES = 1000.0, 800.0, 1250
"""Through the meter: 1000 packets/s of 1250 payload bytes = 10 Mbps (the RAN sends only 800 of them)."""


def ran_text(scrapes: int) -> str:
    """The embb RAN emulator's /metrics at its ``scrapes``-th scrape (one a second)."""
    return (
        "# TYPE process_cpu_seconds_total counter\n"
        f"process_cpu_seconds_total {RAN_CPU_S_PER_S * scrapes}\n"
        "# TYPE slicebed_ran_packets_total counter\n"
        f'slicebed_ran_packets_total{{slice="embb",event="received"}} {RAN_RECEIVED_PPS * scrapes}\n'
        f'slicebed_ran_packets_total{{slice="embb",event="sent"}} {RAN_SENT_PPS * scrapes}\n'
        "# TYPE slicebed_ran_ciphered_bytes_total counter\n"
        f'slicebed_ran_ciphered_bytes_total{{slice="embb"}} {RAN_SENT_PPS * PAYLOAD_BYTES * scrapes}\n'
        "# TYPE slicebed_ran_work_factor gauge\n"
        'slicebed_ran_work_factor{slice="embb"} 8\n')


def others_text(scrapes: int) -> str:
    """Every other program's /metrics: types, users, per-user QoS, allocations, shared capacities. The mmtc
    slice has no traffic (no QoS series); ``legacy`` is an older testbed's slice (no type, no allocation)."""
    return (
        "# TYPE process_cpu_seconds_total counter\n"
        f"process_cpu_seconds_total {OTHER_CPU_S_PER_S * scrapes}\n"
        "# TYPE slicebed_slice_info gauge\n"
        'slicebed_slice_info{slice="embb",type="embb"} 1\n'
        'slicebed_slice_info{slice="urllc",type="urllc"} 1\n'
        'slicebed_slice_info{slice="mmtc",type="mmtc"} 1\n'
        "# TYPE slicebed_active_users gauge\n"
        'slicebed_active_users{slice="embb"} 3\n'
        'slicebed_active_users{slice="urllc"} 2\n'
        'slicebed_active_users{slice="mmtc"} 0\n'
        'slicebed_active_users{slice="legacy"} 1\n'
        "# TYPE slicebed_user_throughput_bps gauge\n"
        'slicebed_user_throughput_bps{slice="embb",user="0"} 4.5e6\n'
        'slicebed_user_throughput_bps{slice="embb",user="10"} 6e6\n'
        'slicebed_user_throughput_bps{slice="embb",user="2"} 2.5e6\n'
        'slicebed_user_throughput_bps{slice="legacy",user="0"} 7e6\n'
        "# TYPE slicebed_user_delay_p95_seconds gauge\n"
        'slicebed_user_delay_p95_seconds{slice="urllc",user="0"} 0.004\n'
        'slicebed_user_delay_p95_seconds{slice="urllc",user="1"} 0.012\n'
        "# TYPE slicebed_allocation_cpu_millicores gauge\n"
        'slicebed_allocation_cpu_millicores{slice="embb"} 2000\n'
        'slicebed_allocation_cpu_millicores{slice="urllc"} 1500\n'
        'slicebed_allocation_cpu_millicores{slice="mmtc"} 1000\n'
        "# TYPE slicebed_allocation_bandwidth_mbps gauge\n"
        'slicebed_allocation_bandwidth_mbps{slice="embb"} 25\n'
        'slicebed_allocation_bandwidth_mbps{slice="urllc"} 10\n'
        'slicebed_allocation_bandwidth_mbps{slice="mmtc"} 5\n'
        "# TYPE slicebed_shared_cpu_millicores gauge\n"
        "slicebed_shared_cpu_millicores 4000\n"
        "# TYPE slicebed_shared_bandwidth_mbps gauge\n"
        "slicebed_shared_bandwidth_mbps 50\n")


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusProcess]:
    """A real Prometheus whose samples of both exporters span more than the rate window (younger series give
    lower rates: Prometheus extrapolates a series' increase only half a scrape beyond its first sample)."""
    ran, others = TextExporter(ran_text), TextExporter(others_text)
    server = PrometheusProcess(tmp_path_factory.mktemp("prometheus"), ran, others)
    server.start()
    try:
        samples = int(DEFAULT_RATE_WINDOW_S) + 3
        server.wait_for_samples("slicebed_ran_work_factor", samples)
        server.wait_for_samples("slicebed_shared_cpu_millicores", samples)
        yield server
    finally:
        server.stop()
        ran.close()
        others.close()


def by_name(snapshot: TopSnapshot) -> dict[str, SliceView]:
    return {view.name: view for view in snapshot.slices}


def test_the_query_part_reads_every_slice_figure_from_a_real_prometheus(scraped: PrometheusProcess) -> None:
    with PrometheusReader(scraped.url) as reader:
        snapshot = read_snapshot(reader, {"embb": 3.0, "urllc": 10.0, "mmtc": 0.99}, Scales(cpu=0.125, rate=2.0))
    slices = by_name(snapshot)
    assert list(slices) == ["embb", "legacy", "mmtc", "urllc"]
    embb, urllc, mmtc, legacy = slices["embb"], slices["urllc"], slices["mmtc"], slices["legacy"]
    assert (embb.type, embb.users, embb.qos_kind) == ("embb", 3, "throughput_mbps")
    assert embb.qos == {"0": 4.5, "2": 2.5, "10": 6.0}  # Mbps, users in numeric order
    assert (embb.worst(), embb.meeting(), embb.threshold) == (2.5, 2, 3.0)
    assert (embb.cpu_millicores, embb.bandwidth_mbps) == (2000, 25)
    assert embb.meter_mbps == pytest.approx(RAN_RECEIVED_PPS * PAYLOAD_BYTES * 8 / 1e6 / 2.0, rel=0.05)  # nominal
    assert embb.ran_cpu_millicores == pytest.approx(RAN_CPU_S_PER_S * 1000 / 0.125, rel=0.05)  # nominal
    assert urllc.qos == pytest.approx({"0": 4.0, "1": 12.0})  # p95 delay in ms: lower is better
    assert (urllc.worst(), urllc.meeting()) == (pytest.approx(12.0), 1)
    assert (urllc.meter_mbps, urllc.ran_cpu_millicores) == (None, None)  # no RAN target exports them
    assert (mmtc.type, mmtc.users, mmtc.qos_kind, mmtc.qos, mmtc.worst(), mmtc.meeting()) == (
        "mmtc", 0, "delivery_ratio", {}, None, None)  # no traffic: the kind from the type, no values
    assert (legacy.type, legacy.qos_kind, legacy.qos, legacy.cpu_millicores) == (
        None, "throughput_mbps", {"0": 7.0}, None)  # an older testbed: no type, judged by throughput
    shared = snapshot.shared
    assert (shared.cpu_capacity, shared.cpu_allocated, shared.bandwidth_capacity, shared.bandwidth_allocated) == (
        4000, 4500, 50, 40)
    assert shared.ran_cpu_millicores == embb.ran_cpu_millicores


def test_an_empty_prometheus_gives_no_slices_and_missing_capacities(prometheus: PrometheusProcess) -> None:
    prometheus.wait_for_samples("up", 1)
    with PrometheusReader(prometheus.url) as reader:
        snapshot = read_snapshot(reader)
    assert snapshot.slices == []
    assert snapshot.shared == SharedView(None, None, None, None, None, None)
    assert "no slicebed series" in text_of(snapshot)


def built_snapshot() -> TopSnapshot:
    many = {str(user): 1.0 + user for user in range(9)}
    return TopSnapshot("http://127.0.0.1:9090", datetime(2026, 12, 1, 20, 0, 5, tzinfo=UTC), [
        SliceView("embb", "embb", 3, "throughput_mbps", {"0": 4.5, "2": 2.5, "10": 6.0}, 3.0, 2000, 25, 9.6, 248,
                  "edge"),
        SliceView("iot", "mmtc", 9, "delivery_ratio", many, None, 1000, 5, None, None),
        SliceView("urllc", "urllc", 2, "delay_p95_ms", {"0": 4.0, "1": 12.0}, 10.0, 3000, 30, None, None),
        SliceView("quiet", "urllc", None, "delay_p95_ms", {}, 10.0, None, None, None, None),
        SliceView("old", None, 1, None, {}, 3.0, None, None, None, None),
    ], SharedView(cpu_capacity=4000, bandwidth_capacity=80, cpu_allocated=6000, bandwidth_allocated=60,
                  meter_mbps=9.6, ran_cpu_millicores=248))


def text_of(snapshot: TopSnapshot) -> str:
    console = Console(width=220, file=io.StringIO())
    console.print(render(snapshot))
    return console.file.getvalue()  # type: ignore[attr-defined]


def rows_of(snapshot: TopSnapshot) -> dict[str, list[str]]:
    """Each slice row's cells as plain text, by slice name, and the shared row."""
    rows = {view.name: [str(cell) for cell in slice_cells(view)] for view in snapshot.slices}
    return {**rows, "shared": [str(cell) for cell in shared_cells(snapshot.shared)]}


def test_the_rendering_shows_qos_against_threshold_allocation_usage_and_the_shared_row() -> None:
    snapshot = built_snapshot()
    rows = rows_of(snapshot)
    assert rows["embb"] == ["embb", "embb", "edge", "3", "0:4.5 2:2.5 10:6", "2.5 Mbps", "> 3 Mbps", "2/3", "2000",
                            "25.0", "9.6", "248"]
    assert rows["urllc"][4:8] == ["0:4 1:12", "12 ms", "< 10 ms", "1/2"]
    assert rows["iot"][4:8] == ["0:1 1:2 2:3 3:4 4:5 5:6 +3", "1", "-", "-"]  # no threshold given
    assert rows["quiet"] == ["quiet", "urllc", "-", "-", "-", "-", "< 10 ms", "-", "-", "-", "-", "-"]
    assert rows["old"] == ["old", "-", "-", "1", "-", "-", "3", "-", "-", "-", "-", "-"]
    assert rows["shared"][8:] == ["6000/4000", "60.0/80.0", "9.6", "248"]
    lines = text_of(snapshot).splitlines()  # the table on a 220-column terminal: one line per row
    assert "slicebed testbed top: http://127.0.0.1:9090 at 20:00:05 UTC" in lines[0]
    assert [line.split()[0] for line in lines if line.strip() and line.split()[0] in rows] == [
        "embb", "iot", "urllc", "quiet", "old", "shared"]
    assert all(cell in text_of(snapshot) for cell in rows["embb"])


def styles_of(cell: str | Text) -> dict[str, str]:
    """Each styled piece of a cell and its style."""
    assert isinstance(cell, Text)
    return {cell.plain[span.start:span.end]: str(span.style) for span in cell.spans}


def test_users_below_threshold_and_sums_above_capacity_are_red() -> None:
    snapshot = built_snapshot()
    qos = {view.name: slice_cells(view)[COLUMNS.index("QoS per user")] for view in snapshot.slices}
    assert styles_of(qos["embb"]) == {"0:": "dim", "4.5": "green", "2:": "dim", "2.5": "bold red", "10:": "dim",
                                      "6": "green"}
    assert styles_of(qos["urllc"])["12"] == "bold red" and styles_of(qos["urllc"])["4"] == "green"
    assert "red" not in " ".join(styles_of(qos["iot"]).values())  # no threshold, no judgement
    shared = shared_cells(snapshot.shared)
    assert styles_of(shared[COLUMNS.index("CPU mc")]) == {"6000/4000": "bold red"}  # 6000 allocated > 4000
    assert styles_of(shared[COLUMNS.index("BW Mbps")]) == {}


def test_json_and_once_read_the_inventorys_prometheus(scraped: PrometheusProcess, tmp_path: Path,
                                                       capfd: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # the table unwrapped
    inventory = write_local_inventory(tmp_path, prometheus_port=scraped.port)
    code, out, err = run_cli(["testbed", "top", "--inventory", str(inventory), "--json",
                              "--experiment", str(REPO / "experiments" / "demo-local.yaml")], capfd)
    assert (code, err) == (0, "")
    document = json.loads(out)
    assert document["prometheus"] == scraped.url and out.count("\n") == 1
    embb = {entry["name"]: entry for entry in document["slices"]}["embb"]
    assert embb["threshold"] == 3.0 and embb["users_meeting_threshold"] == 2  # demo-local's q_thresh
    assert embb["qos"]["per_user"] == {"0": 4.5, "2": 2.5, "10": 6.0} and embb["qos"]["unit"] == "Mbps"
    assert document["shared"]["cpu_millicores"] == {"allocated": 4500, "capacity": 4000}
    assert document["scales"] == {"cpu_scale": 0.125, "rate_scale": 1.0}  # the inventory's
    assert embb["ran_cpu_millicores"] == pytest.approx(RAN_CPU_S_PER_S * 1000 / 0.125, rel=0.05)
    code, out, err = run_cli(["testbed", "top", "--inventory", str(inventory), "--once"], capfd)
    assert (code, err) == (0, "")
    assert "urllc" in out and "4500/4000" in out
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)


def test_the_live_view_refreshes_every_interval_until_interrupted(scraped: PrometheusProcess,
                                                                   capfd: pytest.CaptureFixture[str]) -> None:
    reads: list[float] = []

    with PrometheusReader(scraped.url, retry=TOP_RETRY) as reader:
        def snapshot() -> TopSnapshot:
            reads.append(datetime.now(UTC).timestamp())
            if len(reads) == 4:
                raise KeyboardInterrupt  # Ctrl-C during the fourth refresh
            return read_snapshot(reader)

        watch(snapshot(), snapshot, 0.3)
    gaps = [later - earlier for earlier, later in itertools.pairwise(reads[1:])]
    assert len(reads) == 4 and all(0.25 <= gap < 1.0 for gap in gaps), gaps
    assert "embb" in capfd.readouterr().out  # the last view stays on the screen


def test_an_unreachable_prometheus_is_one_line_naming_the_url_and_testbed_up(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    inventory = write_local_inventory(tmp_path, prometheus_port=port)
    code, out, err = run_cli(["testbed", "top", "--inventory", str(inventory), "--once"], capfd)
    assert (code, out) == (2, "")
    assert_one_error_line(err, f"http://127.0.0.1:{port}", f"slicebed testbed up --inventory {inventory}")


@pytest.mark.parametrize(("argv", "fragment"), [
    (["--prometheus-url", "http://127.0.0.1:9", "--interval", "0"], "--interval 0: expected a positive number"),
    (["--prometheus-url", "http://127.0.0.1:9", "--experiment", "{tmp}/missing.yaml"], "missing.yaml"),
    (["--inventory", "{tmp}/missing.yml"], "missing.yml"),
    (["--prometheus-url", "127.0.0.1:9090"], "is not an http(s) URL"),
])
def test_bad_options_are_one_line(argv: list[str], fragment: str, tmp_path: Path,
                                  capfd: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["testbed", "top", "--once", *[a.format(tmp=tmp_path) for a in argv]], capfd)
    assert (code, out) == (2, "")
    assert_one_error_line(err, fragment)


def test_a_lab_inventory_names_its_monitoring_server_or_its_prometheus_url(tmp_path: Path) -> None:
    document = lab_example_on_loopback()  # the monitoring server is central-1, now on 127.0.0.1
    set_dotted(document, "all.vars.prometheus_port", 9091)
    assert prometheus_url(write_file(tmp_path / "lab.yml", document)) == "http://127.0.0.1:9091"
    set_dotted(document, "all.vars.lab_backend.prometheus_url", "http://127.0.0.1:19090")
    assert prometheus_url(write_file(tmp_path / "lab.yml", document)) == "http://127.0.0.1:19090"
