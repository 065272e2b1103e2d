"""The three test scenarios of the paper (Sec. VII), on synthetic chains or on the Madrid LTE files.

Shapes as in the paper and its code: 2, 2 and 3 slices; per-user bitrates 1+1, 1+2 and 1+2+1 Mbps; availability
0.9; 10 s slots; alpha 0.01; windows 50-250. The Madrid variants use the paper's cells, days and hours; the
synthetic ones use Markov users and MCS with the same slice count, bitrates and phase lengths (4 trial days and
1 regular day).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from controller.sharing.spec import PAPER_WINDOWS, SharingSpec

AVAILABILITY = 0.9
QUANTIZATION = {"users": 5, "mcs": 5, "demand_prb": 10}
MADRID_QUANTIZATION = {"users": 10, "mcs": 5, "demand_prb": 10}
FULL_SHARES = (0.5, 0.6, 0.7, 0.8, 0.9)
QUICK_SHARES = (0.7, 0.9)
QUICK_WINDOWS = (50, 100)

SYNTHETIC = {  # scenario -> (hours, [(bitrate, users_mean, mcs_mean)])
    "scenario-1": ((17, 22), [(1.0, 40, 9), (1.0, 35, 10)]),
    "scenario-2": ((14, 19), [(1.0, 40, 9), (2.0, 15, 11)]),
    "scenario-3": ((9, 17), [(1.0, 40, 9), (2.0, 15, 11), (1.0, 30, 10)]),
}
MADRID = {  # scenario -> (hours, trial days, [(bitrate, zone+freq, first day)])
    "scenario-1": ((17, 22), 4, [(1.0, ("I", "1815"), date(2020, 5, 25)), (1.0, ("I", "2650"), date(2020, 5, 18))]),
    "scenario-2": ((14, 19), 2, [(1.0, ("I", "796"), date(2020, 6, 17)), (2.0, ("I", "1815"), date(2020, 5, 25))]),
    "scenario-3": ((9, 17), 4, [(1.0, ("I", "796"), date(2020, 6, 15)), (2.0, ("I", "1815"), date(2020, 5, 11)),
                                (1.0, ("II", "816"), date(2021, 4, 7))]),
}


def reproduction_scenarios(quick: bool, seeds: list[int], madrid: Path | None = None) -> list[SharingSpec]:
    """The three scenarios; ``quick`` shortens days to 2 hours and evaluates fewer windows and anomalies."""
    common: dict[str, Any] = {
        "slot_s": 10, "alpha": 0.01, "provisioning": "total", "seeds": seeds,
        "windows": list(QUICK_WINDOWS if quick else PAPER_WINDOWS),
        "removed_state_shares": list(QUICK_SHARES if quick else FULL_SHARES),
    }
    if madrid is not None:
        return [SharingSpec.model_validate({**common, "name": name, "slices": _madrid_slices(madrid, *setup)})
                for name, setup in MADRID.items()]
    return [SharingSpec.model_validate({**common, "name": name, "slices": _synthetic_slices(quick, *setup)})
            for name, setup in SYNTHETIC.items()]


def _synthetic_slices(quick: bool, hours: tuple[int, int],
                      slices: list[tuple[float, int, int]]) -> list[dict[str, Any]]:
    window = (hours[0], hours[0] + 2) if quick else hours
    return [{"name": f"ns{index + 1}", "bitrate_mbps": bitrate, "availability": AVAILABILITY,
             "quantization": QUANTIZATION, "trial_segments": 4, "regular_segments": 1,
             "source": {"kind": "synthetic", "hours": window, "users_mean": users, "holding_s": 300,
                        "mcs_mean": mcs, "mcs_std": 5, "mcs_memory_s": 120}}
            for index, (bitrate, users, mcs) in enumerate(slices)]


def _madrid_slices(directory: Path, hours: tuple[int, int], trial_days: int,
                   slices: list[tuple[float, tuple[str, str], date]]) -> list[dict[str, Any]]:
    return [{"name": f"ns{index + 1}", "bitrate_mbps": bitrate, "availability": AVAILABILITY,
             "quantization": MADRID_QUANTIZATION, "trial_segments": trial_days, "regular_segments": 1,
             "source": {"kind": "madrid", "users_csv": directory / f"users_{zone}{freq}_s.csv",
                        "raw_parquet": directory / f"{zone}-{freq}-raw-df-ms.parquet", "first_day": first,
                        "hours": hours, "fill_gaps_s": 3600}}
            for index, (bitrate, (zone, freq), first) in enumerate(slices)]
