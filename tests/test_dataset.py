"""The MicroOpt CSV loader: the shared dataset, settling, writing and grid points."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from collectors.dataset import (
    COLUMNS,
    GRID_KEY,
    grid_points,
    load_qos_csv,
    load_qos_csvs,
    write_qos_csv,
)
from core.errors import InputError

ROWS = 16_539
BLOCKS = 242


@pytest.fixture(scope="module")
def full(microopt_csv: Path) -> pd.DataFrame:
    """The shared dataset with every sample kept."""
    return load_qos_csv(microopt_csv)


def test_shared_dataset_loads_with_every_row_and_block(full: pd.DataFrame, microopt_csv: Path) -> None:
    """All 16,539 rows load as 242 contiguous grid-point blocks, typed, tagged with the file name."""
    assert len(full) == ROWS
    assert list(full.columns) == [*COLUMNS, "block", "source"]
    assert full["block"].nunique() == BLOCKS
    assert list(full["block"].unique()) == list(range(BLOCKS))  # numbered in file order
    assert pd.api.types.is_datetime64_any_dtype(full["time"])
    assert all(full[column].dtype == "float64" for column in COLUMNS[1:])
    assert set(full["source"]) == {microopt_csv.name}
    # one block is one grid point: the key never changes inside a block
    assert (full.groupby("block")[GRID_KEY].nunique() == 1).all().all()


@pytest.mark.parametrize("settle_s", [10.0, 30.0])
def test_settling_drops_the_first_seconds_of_each_block(full: pd.DataFrame, microopt_csv: Path,
                                                         settle_s: float) -> None:
    """No kept row lies less than settle_s after its block started, and exactly the later rows survive."""
    settled = load_qos_csv(microopt_csv, settle_s=settle_s)
    started = full.groupby("block")["time"].min()
    elapsed = (settled["time"] - settled["block"].map(started)).dt.total_seconds()
    assert (elapsed >= settle_s).all()
    assert len(settled) < len(full)

    full_elapsed = (full["time"] - full["block"].map(started)).dt.total_seconds()
    assert len(settled) == int((full_elapsed >= settle_s).sum())


def test_longer_settling_keeps_a_subset(microopt_csv: Path) -> None:
    """Raising settle_s only ever removes rows."""
    sizes = [len(load_qos_csv(microopt_csv, settle_s=s)) for s in (0, 5, 10, 20)]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == len(sizes)


def test_several_files_number_blocks_across_files(microopt_csv: Path) -> None:
    """Loading the same file twice doubles rows and blocks; the second file's blocks follow the first's."""
    both = load_qos_csvs([microopt_csv, microopt_csv])
    assert len(both) == 2 * ROWS
    assert both["block"].nunique() == 2 * BLOCKS
    assert both["block"].iloc[ROWS] == BLOCKS


def test_write_then_load_round_trips(full: pd.DataFrame, tmp_path: Path) -> None:
    """write_qos_csv keeps exactly the six columns, and reading them back gives the same samples."""
    path = tmp_path / "copy.csv"
    write_qos_csv(full, path)
    assert path.read_text(encoding="utf-8").splitlines()[0] == ",".join(COLUMNS)

    again = load_qos_csv(path)
    pd.testing.assert_frame_equal(again[list(COLUMNS)], full[list(COLUMNS)])
    assert (again["block"] == full["block"]).all()


def test_write_refuses_samples_without_the_columns(tmp_path: Path) -> None:
    """A frame lacking a MicroOpt column is not written."""
    frame = pd.DataFrame({"time": ["2024-05-18 11:00:00"], "qos": [1.0]})
    with pytest.raises(InputError, match="lack column"):
        write_qos_csv(frame, tmp_path / "bad.csv")
    assert not (tmp_path / "bad.csv").exists()


def test_grid_points_of_the_shared_dataset(full: pd.DataFrame) -> None:
    """Every distinct (n_users, bw, cpu) appears once and the sample counts add up to the rows."""
    points = grid_points(full)
    assert list(points.columns) == [*GRID_KEY, "samples"]
    assert not points.duplicated(GRID_KEY).any()
    assert points["samples"].sum() == ROWS
    assert len(points) == 239  # three of the 242 blocks revisit a grid point
    assert sorted(points["n_users"].unique()) == [1, 2, 3, 4, 5]


def test_grid_points_count_revisited_points_together() -> None:
    """A grid point measured in two separate blocks is one point with the samples of both."""
    frame = pd.DataFrame({
        "n_users": [1, 1, 1, 2, 2, 1],
        "bw": [5, 5, 5, 5, 5, 5],
        "cpu": [500, 500, 500, 500, 500, 500],
    })
    points = grid_points(frame).set_index(GRID_KEY)["samples"]
    assert points.to_dict() == {(1, 5, 500): 4, (2, 5, 500): 2}


def write_rows(path: Path, times: list[str], trailer: str = "") -> Path:
    """A one-grid-point CSV with the given timestamps, each data line ending in ``trailer``."""
    lines = [",".join(COLUMNS)] + [f"{time},19.8,2000.0,25.0,3.0,6.6{trailer}" for time in times]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(("times", "elapsed"), [
    (["2024-05-18 11:00:00.000000000", "2024-05-18 11:00:01", "2024-05-18 11:00:02.5"], [0, 1, 2.5]),
    (["2024-05-18T11:00:00", "2024-05-18 11:00:01.000", "2024-05-18T11:00:02.250"], [0, 1, 2.25]),
    (["2024-05-18T11:00:00+02:00", "2024-05-18T11:00:01.5+02:00", "2024-05-18 11:00:03+02:00"], [0, 1.5, 3]),
], ids=["mixed-precision", "mixed-separator", "utc-offset"])
def test_iso_timestamps_of_any_precision_load(tmp_path: Path, times: list[str], elapsed: list[float]) -> None:
    """Every ISO 8601 spelling parses, to the right instants."""
    frame = load_qos_csv(write_rows(tmp_path / "times.csv", times))
    assert (frame["time"] - frame["time"].iloc[0]).dt.total_seconds().tolist() == elapsed


def test_trailing_commas_do_not_shift_columns(tmp_path: Path) -> None:
    """Data lines ending in a delimiter keep every value under its own header."""
    frame = load_qos_csv(write_rows(tmp_path / "trailing.csv", ["2024-05-18 11:00:00", "2024-05-18 11:00:01"], ","))
    assert frame[["cpu", "bw", "n_users", "qos"]].iloc[0].tolist() == [2000.0, 25.0, 3.0, 6.6]
