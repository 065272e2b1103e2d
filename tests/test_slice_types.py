"""Slice types without a testbed: recorded traces, the per-type packet sources, the UE sink's per-user QoS windows,
the inventory's slice rules and the loop's lower-is-better QoS."""

from __future__ import annotations

import itertools
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import REPO
from local_testbed import write_local_inventory

from controller.deploy.inventory import load_inventory
from controller.loop.evidence import achieved_degradation
from controller.loop.guard import SafetyGuard
from controller.spec import GuardSpec, SliceSpec, load_spec
from controller.testbeds import open_testbed
from core.errors import InputError
from core.packet_trace import load_trace
from core.slice_types import HIGHER_IS_BETTER, QOS_OF_TYPE, degraded
from dataplane import packets
from dataplane.sources import RateProfile, SourceSettings, interactive, periodic, replay, user_source, video
from dataplane.ue_sink import UserWindow, percentile_95

SYNTHETIC_TRACE = "interarrival_s,size_bytes\n0.0,120\n0.004,80\n0.001,300\n0.015,64\n"


def write_pcap(path: Path, packets_at: list[tuple[float, int]], link_type: int = 1) -> Path:
    """A libpcap file (microsecond timestamps, little-endian) of frames of the given original lengths."""
    data = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, link_type)
    for stamp, length in packets_at:
        seconds, micros = int(stamp), round((stamp - int(stamp)) * 1e6)
        data += struct.pack("<IIII", seconds, micros, 0, length)  # no bytes captured: only lengths matter
    path.write_bytes(data)
    return path


def test_a_csv_trace_and_a_pcap_read_to_the_same_gaps_and_payloads(tmp_path: Path) -> None:
    csv = tmp_path / "trace.csv"
    csv.write_text("# synthetic\n" + SYNTHETIC_TRACE)
    from_csv = load_trace(csv)
    assert from_csv.gaps_s == (0.0, 0.004, 0.001, 0.015) and from_csv.sizes == (120, 80, 300, 64)
    assert from_csv.duration_s == pytest.approx(0.02)
    assert from_csv.mean_rate_mbps == pytest.approx(564 * 8 / 0.02 / 1e6)
    frames = [(100.0, 120 + 42), (100.004, 80 + 42), (100.005, 300 + 42), (100.020, 64 + 42)]
    from_pcap = load_trace(write_pcap(tmp_path / "trace.pcap", frames))
    assert from_pcap.sizes == from_csv.sizes
    assert from_pcap.gaps_s == pytest.approx(from_csv.gaps_s, abs=1e-6)


@pytest.mark.parametrize(("name", "text", "expected"), [
    ("negative.csv", "interarrival_s,size_bytes\n0.1,100\n-0.3,100\n", "row 3: inter-arrival time -0.3 s is negative"),
    ("empty.csv", "interarrival_s,size_bytes\n", "the trace has no packets"),
    ("instant.csv", "interarrival_s,size_bytes\n0,100\n0,100\n", "every inter-arrival time is 0"),
    ("columns.csv", "gap,bytes\n0.1,100\n", "lacks interarrival_s, size_bytes"),
    ("words.csv", "interarrival_s,size_bytes\nsoon,100\n", "row 2: interarrival_s and size_bytes must be numbers"),
    ("huge.csv", "interarrival_s,size_bytes\n0.1,70000\n", "packet size 70000 bytes is outside"),
])
def test_a_bad_trace_is_one_line_naming_the_file_and_row(tmp_path: Path, name: str, text: str, expected: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InputError) as caught:
        load_trace(path)
    assert str(path) in str(caught.value) and expected in str(caught.value) and "\n" not in str(caught.value)


def test_a_pcap_out_of_time_order_and_a_pcapng_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="packet 2: inter-arrival time -1 s is negative"):
        load_trace(write_pcap(tmp_path / "late.pcap", [(10.0, 200), (9.0, 200)]))
    pcapng = tmp_path / "capture.pcap"
    pcapng.write_bytes(b"\x0a\x0d\x0d\x0a" + bytes(40))
    with pytest.raises(InputError, match="not a libpcap capture"):
        load_trace(pcapng)


def _rate_mbps(source: object, seconds: float) -> tuple[float, int]:
    """(payload Mbps, packets) of a source over its first ``seconds``."""
    elapsed, total, count = 0.0, 0, 0
    for gap, size in source:  # type: ignore[attr-defined]
        elapsed += gap
        if elapsed > seconds:
            return total * 8 / seconds / 1e6, count
        total, count = total + size, count + (size > 0)
    raise AssertionError("a source never ends")


def test_each_slice_types_source_sends_what_its_parameters_say() -> None:
    rng = np.random.default_rng(1)
    video_rate, _ = _rate_mbps(video(lambda: RateProfile(12.0), 0, 30.0, 0.25, 1400, rng), 60)
    assert video_rate == pytest.approx(12.0, rel=0.03)
    urllc_rate, urllc_packets = _rate_mbps(interactive(0.002, 200, rng), 60)
    assert urllc_packets == pytest.approx(30_000, rel=0.03) and urllc_rate == pytest.approx(0.8, rel=0.03)
    mmtc_rate, mmtc_packets = _rate_mbps(periodic(100, 1.0, 100, rng), 10.0)
    assert abs(mmtc_packets - 1000) <= 1 and mmtc_rate == pytest.approx(0.08, rel=0.01)


def test_a_trace_replays_cyclically_and_users_start_at_different_packets(tmp_path: Path) -> None:
    path = tmp_path / "trace.csv"
    path.write_text(SYNTHETIC_TRACE)
    trace = load_trace(path)
    first = list(itertools.islice(replay(trace, 0), 8))
    assert first == list(zip(trace.gaps_s, trace.sizes, strict=True)) * 2
    assert list(itertools.islice(replay(trace, 1), 4)) != first[:4]
    settings = SourceSettings("urllc", trace=trace)  # a trace takes precedence over the type's generator
    assert next(user_source(settings, lambda: RateProfile(1.0), 0, np.random.default_rng(0))) == first[0]
    smallest = min(size for _, size in itertools.islice(replay(load_trace(path), 0), 4))
    assert smallest >= packets.APP.size  # every packet carries the app header


def test_the_sink_counts_losses_from_sequence_numbers_across_windows() -> None:
    window = UserWindow()
    for sequence in (0, 1, 2, 4, 5):  # 3 lost
        window.add(100, sequence, 0.010)
    assert window.expected() == 6
    window.close()
    for sequence in (9, 10):  # 6, 7, 8 lost at the window's start: counted here
        window.add(100, sequence, 0.010)
    assert window.expected() == 5
    window.close()
    for sequence in (0, 1, 2):  # the user left and came back: a new session restarts the numbers
        window.add(100, sequence, 0.010)
    assert window.expected() == 3


def test_the_p95_is_the_nearest_rank_percentile() -> None:
    assert percentile_95([float(v) for v in range(1, 101)]) == 95.0
    assert percentile_95([0.004]) == 0.004
    assert percentile_95([0.001] * 19 + [0.5]) == 0.001  # one late packet in 20 is the 5 % the p95 forgives


def test_every_slice_type_has_a_qos_with_a_direction() -> None:
    assert set(QOS_OF_TYPE.values()) == set(HIGHER_IS_BETTER)
    assert HIGHER_IS_BETTER[QOS_OF_TYPE["urllc"]] is False
    assert degraded([10.0, 30.0], 20.0, higher_is_better=False).tolist() == [False, True]
    assert degraded([10.0, 30.0], 20.0, higher_is_better=True).tolist() == [True, False]


def test_a_delay_slice_degrades_above_its_threshold_in_eq1_and_in_the_guard() -> None:
    samples = pd.DataFrame({"n_users": [1, 3, 1, 1], "qos": [12.0, 40.0, 25.0, 8.0]})
    assert achieved_degradation(samples, 20.0, higher_is_better=False) == pytest.approx(4 / 6)
    assert achieved_degradation(samples, 20.0) == pytest.approx(2 / 6)
    spec = SliceSpec.model_validate({"name": "urllc", "qos": "delay_p95_ms", "q_thresh": 20,
                                     "beta_thresh": 0.1, "traffic": [{"kind": "constant", "users": 2}]})
    assert spec.higher_is_better is False
    guard = SafetyGuard(GuardSpec(margin=0.05, alpha=0.01, min_seconds=5), spec.q_thresh, spec.beta_thresh, 30,
                        higher_is_better=spec.higher_is_better)
    tripped = [guard.observe(2, 60.0) for _ in range(30)]
    assert any(evidence is not None for evidence in tripped)
    calm = SafetyGuard(GuardSpec(margin=0.05, alpha=0.01, min_seconds=5), 20.0, 0.1, 30, higher_is_better=False)
    assert all(calm.observe(2, 5.0) is None for _ in range(30))


def _slices(*entries: dict[str, object]):  # type: ignore[no-untyped-def]
    def edit(document: dict) -> None:
        document["all"]["vars"]["slices"] = list(entries)
    return edit


@pytest.mark.parametrize(("edit", "expected"), [
    (_slices({"name": "a", "dscp": 10, "bandwidth_mbps": 5}, {"name": "b", "dscp": 10, "bandwidth_mbps": 5}),
     "two slices have dscp 10; each slice needs its own"),
    (_slices({"name": "a", "type": "voice", "dscp": 10, "bandwidth_mbps": 5}), "type"),
    (_slices({"name": "a", "dscp": 10, "bandwidth_mbps": 80}, {"name": "b", "dscp": 12, "bandwidth_mbps": 30}),
     "transport_bandwidth_mbps 60 is below the sum of the slices' bandwidth_mbps (110)"),
    (_slices({"name": "a", "dscp": 10, "bandwidth_mbps": 5, "trace": "missing.csv"}), "cannot read the trace"),
])
def test_bad_slices_in_the_inventory_are_one_line(tmp_path: Path, edit, expected: str) -> None:  # type: ignore[no-untyped-def]
    path = write_local_inventory(tmp_path, edit=edit)
    with pytest.raises(InputError) as caught:
        load_inventory(path)
    assert expected in str(caught.value) and str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_an_inventory_trace_is_resolved_next_to_the_inventory_and_checked(tmp_path: Path) -> None:
    (tmp_path / "urllc.csv").write_text("interarrival_s,size_bytes\n0.1,100\n-1,100\n")
    path = write_local_inventory(tmp_path, edit=_slices(
        {"name": "urllc", "type": "urllc", "dscp": 46, "bandwidth_mbps": 5, "trace": "urllc.csv"}))
    with pytest.raises(InputError, match=r"slices urllc: trace .*urllc.csv: row 3: inter-arrival time -1 s"):
        load_inventory(path)
    (tmp_path / "urllc.csv").write_text(SYNTHETIC_TRACE)
    inventory = load_inventory(path)
    assert inventory.settings.slices[0].trace == tmp_path / "urllc.csv"
    assert inventory.settings.slices[0].qos == "delay_p95_ms"


def test_the_shipped_three_slice_experiment_needs_the_local_testbed() -> None:
    spec = load_spec(REPO / "experiments" / "demo-local-3slices.yaml")
    assert [s.qos for s in spec.slices] == ["throughput_mbps", "delay_p95_ms", "delivery_ratio"]
    assert spec.resources.capacity is not None
    peaks = np.sum([s.bounds.upper for s in spec.slices], axis=0)
    assert (np.asarray(spec.resources.capacity.as_tuple()) < peaks).all()  # both capacities can bind
    with pytest.raises(InputError, match=r"the replay testbed measures per-user throughput only; slice\(s\) "
                                         r"urllc \(delay_p95_ms\), mmtc \(delivery_ratio\) need the local testbed"):
        open_testbed(spec, "replay")
