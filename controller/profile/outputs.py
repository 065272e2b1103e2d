"""A profile's outputs in its run directory: ``demand.csv`` (the demand table), ``plots/cores-vs-users.png`` (one
panel per slice type, a line per VNF) and ``report.md``/``report.html``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from analysis.plots import save_figure
from analysis.report import ReportSection, write_report
from controller.profile.runner import AT_QUOTA, DEMAND_COLUMNS, ProfileTarget
from controller.profile.usage import VNFS
from core.runstore import Run

DEMAND_CSV = "demand.csv"


def write_demand_csv(table: pd.DataFrame, path: Path) -> Path:
    """The demand table as CSV (``DEMAND_COLUMNS``, floats rounded to 4 decimals)."""
    missing = [column for column in DEMAND_COLUMNS if column not in table.columns]
    if missing:
        raise ValueError(f"the demand table lacks column(s) {', '.join(missing)}")
    table[list(DEMAND_COLUMNS)].round(4).to_csv(path, index=False)
    return path


def plot_cores_vs_users(table: pd.DataFrame, cpu_scale: float, path: Path) -> Path:
    """Host cores against users for each VNF, one panel per slice type; nominal cores on the right-hand axis."""
    types = list(dict.fromkeys(table["slice_type"]))
    figure, axes = plt.subplots(1, len(types), figsize=(4.6 * len(types), 3.8), squeeze=False, sharey=True)
    for axis, slice_type in zip(axes[0], types, strict=True):
        rows = table[table["slice_type"] == slice_type]
        for vnf in [name for name in VNFS if name in set(rows["vnf"])]:
            line = rows[rows["vnf"] == vnf].sort_values("users")
            axis.plot(line["users"], line["host_cores"], marker="o", label=vnf)
        axis.set_xscale("log", base=2)
        axis.set_xticks(sorted(rows["users"].unique()), [str(u) for u in sorted(rows["users"].unique())])
        axis.set_title(f"{slice_type} ({', '.join(dict.fromkeys(rows['slice']))})")
        axis.set_xlabel("users")
        axis.grid(alpha=0.3)
        nominal = axis.secondary_yaxis("right", functions=(lambda host: host / cpu_scale,
                                                           lambda cores: cores * cpu_scale))
        nominal.set_ylabel(f"nominal cores (host / cpu_scale {cpu_scale:g})" if axis is axes[0][-1] else "")
    axes[0][0].set_ylabel("host cores")
    axes[0][0].set_ylim(bottom=0)
    axes[0][0].legend(fontsize=8)
    return save_figure(figure, path)


def write_profile_outputs(run: Run, target: ProfileTarget, table: pd.DataFrame) -> dict[str, Any]:
    """CSV, plot and report in ``run``; returns the ``--json`` summary."""
    spec, settings = target.spec, target.inventory.settings
    csv = write_demand_csv(table, run.path / DEMAND_CSV)
    figure = plot_cores_vs_users(table, settings.cpu_scale, run.plots_dir / "cores-vs-users.png")
    limited = table[table["at_cpu_quota"]]
    setting = (
        f"Local testbed `{target.inventory.prefix}` ({target.inventory.path}), {os.cpu_count()} host CPUs. Each "
        f"slice profiled alone at {', '.join(map(str, spec.users))} users with {spec.allocation.cpu_millicores:g} "
        f"nominal millicores and {spec.allocation.bandwidth_mbps:g} Mbps; {spec.settle_s} s settling, then "
        f"{spec.dwell_s} s measured per step. `host_cores`: CPU seconds per wall second on this host (the RAN "
        f"emulator from its cgroup, the others from /proc/PID/stat); `nominal_cores` = host cores / cpu_scale "
        f"{settings.cpu_scale:g}; `memory_mb`: resident memory in MiB at the end of the step; `throughput_mbps`: "
        f"the slice's delivered throughput (all users), `qos`: the mean of the slice type's QoS over the step.")
    caveat = ("none: no RAN emulator reached its cgroup quota." if limited.empty else
              f"{len(limited)} step(s) ran the RAN emulator at {100 * AT_QUOTA:.0f} % or more of its cgroup quota "
              f"({spec.allocation.cpu_millicores:g} nominal millicores): its demand there is at least the figure "
              f"given (slices and users: {', '.join(f'{r.slice} x{r.users}' for r in limited.itertuples())}).")
    write_report(run.path, f"VNF demand profile {spec.name}", [
        ReportSection("Setting", setting),
        ReportSection("Demand table", f"Also in `{DEMAND_CSV}`.", table=table[list(DEMAND_COLUMNS)]),
        ReportSection("Cores against users", figures=[figure]),
        ReportSection("Limited by the allocation", caveat),
    ])
    return {"run": run.id, "path": str(run.path), "csv": str(csv), "plot": str(figure),
            "cpu_scale": settings.cpu_scale, "rows": table[list(DEMAND_COLUMNS)].to_dict(orient="records")}
