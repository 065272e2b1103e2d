"""Slice types and the QoS each one is judged by (SlicePilot's captured profiles, issue 12).

- ``embb``: video-like downlink; QoS = per-user throughput in Mbps (higher is better);
- ``urllc``: small packets at short inter-arrival times; QoS = per-user p95 one-way delay in ms (lower is better);
- ``mmtc``: sparse periodic small messages from many devices; QoS = per-user delivery ratio (higher is better).

The data plane, the testbeds' QoS meters and the experiment specification all read this one table.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

SliceType = Literal["embb", "urllc", "mmtc"]
QosKind = Literal["throughput_mbps", "delay_p95_ms", "delivery_ratio"]

SLICE_TYPES: tuple[SliceType, ...] = ("embb", "urllc", "mmtc")
QOS_OF_TYPE: dict[SliceType, QosKind] = {"embb": "throughput_mbps", "urllc": "delay_p95_ms", "mmtc": "delivery_ratio"}
HIGHER_IS_BETTER: dict[QosKind, bool] = {"throughput_mbps": True, "delay_p95_ms": False, "delivery_ratio": True}
QOS_UNITS: dict[QosKind, str] = {"throughput_mbps": "Mbps per user", "delay_p95_ms": "ms (p95 one-way delay)",
                                 "delivery_ratio": "delivered / sent"}


def degraded(qos: ArrayLike, q_thresh: float, higher_is_better: bool) -> np.ndarray:
    """Which slots miss their threshold: q <= q_thresh, or q >= q_thresh for a lower-is-better QoS."""
    values = np.asarray(qos, dtype=float)
    return values <= q_thresh if higher_is_better else values >= q_thresh
