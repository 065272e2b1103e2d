"""Metrics of the regular phase (paper Sec. VI-B, VII-E) from the per-slice result rows of
:func:`controller.sharing.evaluation.evaluate`: acceptance, rejection ratios, resource efficiency (PRB saving
against NoSh) and performance isolation (share of anomalous cases in which every well-behaved slice met its
availability), each computed per seed and reported as the mean and standard deviation over seeds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

CASE_KEYS = ["scenario", "seed", "case", "scheme"]
NORMAL_CASE = "all slices normal"


def scheme_order(results: pd.DataFrame) -> list[str]:
    """Schemes in the paper's order: NoSh, Sh, then ShT by window."""
    schemes = results.drop_duplicates("scheme")[["scheme", "window"]]
    rank = schemes["scheme"].map({"NoSh": -2, "Sh": -1}).fillna(schemes["window"])
    return list(schemes.assign(rank=rank).sort_values("rank")["scheme"])


def case_outcomes(results: pd.DataFrame) -> pd.DataFrame:
    """One row per scenario, seed, case and scheme: PRBs, anomaly and whether every well-behaved slice met its SLA."""
    grouped = results.groupby(CASE_KEYS, sort=False)
    outcomes = grouped.first()[["anomalous", "removed_share", "prbs", "correct_rejection", "wrong_rejection",
                                "false_alarm", "window", "tests", "test_seconds"]]
    outcomes["isolated"] = grouped.apply(lambda rows: bool(rows.loc[rows["well_behaved"], "met"].all()),
                                         include_groups=False)
    return outcomes.reset_index()


def _spread(values: pd.Series, digits: int = 1) -> str:
    values = values.dropna()
    if values.empty:
        return "-"
    if len(values) == 1:
        return f"{values.iloc[0]:.{digits}f}"
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


def table7(results: pd.DataFrame) -> pd.DataFrame:
    """Per scheme: PRB saving vs NoSh and performance isolation (%), scenarios weighed equally, mean ± std over
    seeds."""
    outcomes = case_outcomes(results)
    nosh = outcomes[outcomes["scheme"] == "NoSh"].groupby(["scenario", "seed"])["prbs"].first()
    outcomes["saving"] = 100.0 * (1 - outcomes["prbs"] / outcomes.set_index(["scenario", "seed"]).index.map(nosh))
    anomalous = outcomes[outcomes["anomalous"] != ""]
    per_scenario = anomalous.groupby(["scheme", "seed", "scenario"]).agg(
        saving=("saving", "first"), isolation=("isolated", lambda isolated: 100.0 * isolated.mean()))
    per_seed = per_scenario.groupby(["scheme", "seed"]).mean()
    rows = []
    for scheme in scheme_order(results):
        seeds = per_seed.loc[scheme]
        rows.append({"scheme": scheme, "prb_saving_pct": seeds["saving"].mean(),
                     "isolation_pct": seeds["isolation"].mean(), "saving": _spread(seeds["saving"]),
                     "isolation": _spread(seeds["isolation"]), "seeds": len(seeds)})
    return pd.DataFrame(rows)


def normal_table(results: pd.DataFrame, scenario: str) -> pd.DataFrame:
    """Tables I, V and VI: every slice normal; PRBs and acceptance (%) per slice for each scheme."""
    return _scheme_table(results[(results["scenario"] == scenario) & (results["case"] == NORMAL_CASE)], False)


def anomaly_table(results: pd.DataFrame, scenario: str, anomalous: str, share: float) -> pd.DataFrame:
    """Tables II-IV: one slice anomalous; PRBs, acceptance (%) per slice, correct and wrong rejections (%)."""
    rows = results[(results["scenario"] == scenario) & (results["anomalous"] == anomalous)
                   & np.isclose(results["removed_share"], share)]
    return _scheme_table(rows, True)


def _scheme_table(rows: pd.DataFrame, rejections: bool) -> pd.DataFrame:
    table = []
    for scheme in scheme_order(rows):
        mine = rows[rows["scheme"] == scheme]
        entry: dict[str, object] = {"scheme": scheme, "PRBs": _spread(mine.groupby("seed")["prbs"].first(), 0)}
        for name, per_slice in mine.groupby("slice", sort=False):
            entry[f"acceptance {name} (%)"] = _spread(100.0 * per_slice["acceptance"])
        if rejections:
            first = mine.groupby("seed").first()
            entry["correct rejection (%)"] = _spread(100.0 * first["correct_rejection"])
            entry["wrong rejection (%)"] = _spread(100.0 * first["wrong_rejection"])
        table.append(entry)
    return pd.DataFrame(table)


def acceptance_vs_share(results: pd.DataFrame) -> pd.DataFrame:
    """Per scenario, anomalous slice, scheme and removed share: the lowest well-behaved acceptance (mean over seeds)
    and the share of seeds in which every well-behaved slice met its SLA (Figs. 8, 9, 11-13)."""
    outcomes = case_outcomes(results)
    lowest = results[results["well_behaved"] & (results["anomalous"] != "")].groupby(CASE_KEYS)["acceptance"].min()
    outcomes = outcomes[outcomes["anomalous"] != ""].set_index(CASE_KEYS)
    outcomes["lowest_acceptance"] = lowest
    return outcomes.reset_index().groupby(["scenario", "anomalous", "scheme", "removed_share"], sort=False).agg(
        lowest_acceptance=("lowest_acceptance", "mean"), isolated=("isolated", "mean")).reset_index()


def test_time(results: pd.DataFrame) -> pd.DataFrame:
    """Fig. 14: mean time of one slice's test per window size (ms), over every test run."""
    outcomes = case_outcomes(results)
    tested = outcomes[(outcomes["tests"] > 0) & (outcomes["window"] > 0)]
    weighted = tested.assign(total=tested["test_seconds"] * tested["tests"])
    per_window = weighted.groupby("window")[["total", "tests"]].sum()
    return pd.DataFrame({"window": per_window.index, "test_ms": 1e3 * per_window["total"] / per_window["tests"],
                         "tests": per_window["tests"]}).reset_index(drop=True)
