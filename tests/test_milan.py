"""The Milan CDR loader on small files generated here, and the dynamic traffic built from it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from collectors.milan import cell_series, read_cdr_file, traffic_variation
from controller.traffic import dynamic_traffic
from core.errors import InputError

START_MS = 1383260400000  # 2013-11-01 00:00 CET, the dataset's first interval
TEN_MINUTES_MS = 600_000


def write_cdr(path: Path, internet: dict[int, list[float]], hours: int = 3, extra: str = "") -> Path:
    """A CDR file: per square, one Internet value per 10-minute interval, split over two country codes."""
    lines = []
    for square, values in internet.items():
        for step, value in enumerate(values[: hours * 6]):
            time_ms = START_MS + step * TEN_MINUTES_MS
            lines.append(f"{square}\t{time_ms}\t39\t0.5\t\t0.1\t\t{value * 0.75}")
            lines.append(f"{square}\t{time_ms}\t0\t\t\t\t\t{value * 0.25}")
    path.write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")
    return path


def test_sums_country_codes_and_allows_empty_fields(tmp_path: Path) -> None:
    path = write_cdr(tmp_path / "sms-call-internet-mi-2013-11-01.txt", {7: [4.0] * 18})
    frame = read_cdr_file(path)
    assert len(frame) == 36
    assert frame["sms_out"].eq(0).all()  # empty fields read as no activity
    square, series = cell_series(frame)
    assert square == 7
    assert len(series) == 18 and np.allclose(series, 4.0)
    assert series.index[0].isoformat() == "2013-10-31T23:00:00+00:00"


def test_variation_matches_hand_computation(tmp_path: Path) -> None:
    # hour 1 alternates 10 and 20, hour 2 is flat 20, hour 3 steps 0..50 by 10; the cell's peak is 50
    values = [10.0, 20.0] * 3 + [20.0] * 6 + [0.0, 10.0, 20.0, 30.0, 40.0, 50.0]
    path = write_cdr(tmp_path / "day.txt", {3: values, 9: [1.0] * 18})
    variation = traffic_variation([path], peak_users=5.0)
    assert variation.square_id == 3  # the busiest cell
    users = np.array(values) / 50 * 5
    hourly = [np.std(users[index : index + 6], ddof=1) for index in (0, 6, 12)]
    assert variation.sigma_mean == pytest.approx(np.mean(hourly))
    assert variation.sigma_max == pytest.approx(max(hourly))
    assert variation.hours == 3 and variation.intervals == 18
    quiet = traffic_variation([path], square_id=9)
    assert quiet.sigma_max == pytest.approx(0.0)


def test_dynamic_traffic_from_variation(tmp_path: Path) -> None:
    values = [10.0, 30.0] * 9
    variation = traffic_variation([write_cdr(tmp_path / "day.txt", {1: values})])
    distributions = dynamic_traffic(variation.sigma_mean, variation.sigma_max + 0.5)
    assert len(distributions) == 10
    for centre, std, distribution in distributions:
        assert distribution.support.min() >= 1 and distribution.support.max() <= 5
        assert std in (variation.sigma_mean, variation.sigma_max + 0.5)
        # truncation to [1, 5] pulls the mean towards 3 only
        assert min(centre, 3.0) - 1e-9 <= distribution.mean <= max(centre, 3.0) + 1e-9
    wide = [distribution for _, std, distribution in distributions if std > variation.sigma_mean]
    narrow = [distribution for _, std, distribution in distributions if std == variation.sigma_mean]
    spread = [np.sqrt(d.probabilities @ (d.support - d.mean) ** 2) for d in (narrow[2], wide[2])]
    assert spread[0] < spread[1]


@pytest.mark.parametrize(("extra", "message"), [
    ("12\t1383260400000\t39\t1\t2\t3\t4\t5\t6\n", "line 37: expected 8 tab-separated fields"),
    ("12\tnoon\t39\t1\t2\t3\t4\t5\n", "line 37: time_interval is 'noon'"),
    ("\t1383260400000\t39\t1\t2\t3\t4\t5\n", "line 37: square_id is empty"),
    ("12\t1383260400000\t39\t1\t-2\t3\t4\t5\n", "line 37: sms_out is '-2'"),
])
def test_bad_lines_are_named(tmp_path: Path, extra: str, message: str) -> None:
    path = write_cdr(tmp_path / "bad.txt", {5: [1.0] * 18}, extra=extra)
    with pytest.raises(InputError, match=message) as caught:
        read_cdr_file(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_cdr_file(tmp_path / "absent.txt")
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    with pytest.raises(InputError, match=r"empty\.txt"):
        read_cdr_file(tmp_path / "empty.txt")
    path = write_cdr(tmp_path / "day.txt", {5: [1.0] * 18})
    with pytest.raises(InputError, match="square_id 6 does not occur"):
        traffic_variation([path], square_id=6)
    with pytest.raises(InputError, match="sigma_mean <= sigma_max"):
        dynamic_traffic(1.0, 0.5)
