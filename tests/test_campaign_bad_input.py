"""Bad campaign input never ends in a traceback: one ``slicebed: error:`` line naming the file or option, exit 2.

Corpora: campaign specs (wrong types, missing keys, negative/NaN values, duplicate names, empty files,
binary garbage), the replay datasets they name, run directories, and command-line values. Nothing
half-created is left behind: a rejected ``campaign run`` creates no run directory.
"""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import GOOD_QOS_CSV, GOOD_QOS_ROWS, QOS_CSV_HEADER, SLICEBED, assert_one_error_line, run_cli, set_dotted

from controller.cli import main


def base(dataset: Path) -> dict[str, Any]:
    return {
        "name": "bad-campaign",
        "testbed": {"backend": "replay", "replay": {"source": "dataset", "dataset": str(dataset), "settle_s": 0}},
        "slices": [{"name": "embb", "bounds": {"cpu_millicores": [500, 4000], "bandwidth_mbps": [5, 40]}}],
        "grid": {"users": [3], "bandwidth_mbps": [25], "cpu_millicores": {"start": 1000, "stop": 2000, "step": 1000}},
        "dwell_s": 5,
    }


def set_key(dotted: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """An edit that sets the key ``dotted`` to ``value`` (``...`` deletes it)."""
    return lambda document: set_dotted(document, dotted, value)


@dataclass(frozen=True)
class Case:
    """A spec made from the base by ``edit`` (or raw ``text``), and the fragments the error line must hold."""

    name: str
    fragments: tuple[str, ...]
    edit: Callable[[dict[str, Any]], None] | None = None
    text: bytes | None = None


SPEC_CASES = [
    Case("empty file", ("the file is empty",), text=b""),
    Case("only whitespace", ("the file is empty",), text=b"  \n\n "),
    Case("binary garbage", ("cannot read as UTF-8",), text=bytes(range(256)) * 4),
    Case("latin-1 text", ("cannot read as UTF-8",), text="name: caf\xe9\n".encode("latin-1")),
    Case("yaml syntax error", ("YAML syntax error",), text=b"name: [unclosed\ngrid: {\n"),
    Case("tab indentation", ("YAML syntax error",), text=b"name: x\ngrid:\n\tusers: [1]\n"),
    Case("top-level list", ("expected a mapping", "list"), text=b"- name: x\n"),
    Case("top-level scalar", ("expected a mapping", "str"), text=b"just words\n"),
    Case("missing name", ("name", "required key is missing"), set_key("name", ...)),
    Case("missing grid", ("grid", "required key is missing"), set_key("grid", ...)),
    Case("missing dwell", ("dwell_s", "required key is missing"), set_key("dwell_s", ...)),
    Case("missing slices", ("slices", "required key is missing"), set_key("slices", ...)),
    Case("missing grid axis", ("grid.cpu_millicores", "required key is missing"), set_key("grid.cpu_millicores", ...)),
    Case("unknown top-level key", ("dwell", "unknown key"), set_key("dwell", 5)),
    Case("unknown grid key", ("grid.user", "unknown key"), set_key("grid.user", [1])),
    Case("unknown slice key", ("slices[0].q_thresh", "unknown key"), set_key("slices.0.q_thresh", 3)),
    Case("bad campaign name", ("name", "should match pattern"), set_key("name", "../escape")),
    Case("name is a number", ("name", "valid string"), set_key("name", 12)),
    Case("negative dwell", ("dwell_s", "greater than or equal to 1"), set_key("dwell_s", -5)),
    Case("zero dwell", ("dwell_s", "greater than or equal to 1"), set_key("dwell_s", 0)),
    Case("dwell is text", ("dwell_s", "valid integer"), set_key("dwell_s", "seventy")),
    Case("dwell is NaN", ("dwell_s",), set_key("dwell_s", float("nan"))),
    Case("fractional dwell", ("dwell_s", "fractional part"), set_key("dwell_s", 1.5)),
    Case("zero repetitions", ("repetitions", "greater than or equal to 1"), set_key("repetitions", 0)),
    Case("negative settle", ("settle_s", "greater than or equal to 0"), set_key("settle_s", -1)),
    Case("users is text", ("grid.users", "valid list"), set_key("grid.users", "five")),
    Case("users empty list", ("grid.users", "needs at least one value"), set_key("grid.users", [])),
    Case("duplicate users", ("grid.users", "duplicate value(s) 3"), set_key("grid.users", [3, 3])),
    Case("fractional users", ("grid.users", "whole numbers"), set_key("grid.users", [2.5])),
    Case("negative users", ("grid.users[0]", "greater than 0"), set_key("grid.users", [-1])),
    Case("users entry is text", ("grid.users[1]", "valid number"), set_key("grid.users", [1, "two"])),
    Case("NaN bandwidth", ("grid.bandwidth_mbps[0]", "finite number"), set_key("grid.bandwidth_mbps", [float("nan")])),
    Case("infinite bandwidth", ("grid.bandwidth_mbps[0]",), set_key("grid.bandwidth_mbps", [float("inf")])),
    Case("range start above stop", ("grid.cpu_millicores", "is above stop"),
         set_key("grid.cpu_millicores", {"start": 3000, "stop": 1000, "step": 500})),
    Case("range step zero", ("grid.cpu_millicores.step", "greater than 0"),
         set_key("grid.cpu_millicores", {"start": 500, "stop": 1000, "step": 0})),
    Case("range without step", ("grid.cpu_millicores.step", "required key is missing"),
         set_key("grid.cpu_millicores", {"start": 500, "stop": 1000})),
    Case("range unknown key", ("grid.cpu_millicores.stride", "unknown key"),
         set_key("grid.cpu_millicores", {"start": 500, "stop": 1000, "step": 500, "stride": 1})),
    Case("range too fine", ("grid.cpu_millicores", "more than 100000 values"),
         set_key("grid.cpu_millicores", {"start": 500, "stop": 4000, "step": 0.001})),
    Case("grid outside bounds", ("grid.cpu_millicores value 4500", "outside slice embb's bounds"),
         set_key("grid.cpu_millicores", [1000, 4500])),
    Case("duplicate slice names", ("slices", "duplicate slice name(s): embb"),
         lambda d: d["slices"].append(copy.deepcopy(d["slices"][0]))),
    Case("no slices", ("slices", "at least 1 item"), set_key("slices", [])),
    Case("uppercase slice name", ("slices[0].name", "should match pattern"), set_key("slices.0.name", "EMBB")),
    Case("bounds reversed", ("slices[0].bounds", "is above max"),
         set_key("slices.0.bounds.cpu_millicores", [4000, 500])),
    Case("negative bound", ("slices[0].bounds.bandwidth_mbps[0]", "greater than 0"),
         set_key("slices.0.bounds.bandwidth_mbps", [-5, 40])),
    Case("unknown backend", ("testbed.backend", "'replay', 'local' or 'lab'"), set_key("testbed.backend", "cloud")),
    Case("replay without dataset", ("testbed.replay", "needs 'dataset: CSV'"), set_key("testbed.replay.dataset", ...)),
    Case("negative order seed", ("order.seed", "greater than or equal to 0"), set_key("order", {"seed": -1})),
    Case("randomize is not a bool", ("order.randomize", "valid boolean"), set_key("order", {"randomize": "maybe"})),
    Case("prometheus url not http", ("prometheus.url", "should match pattern"),
         set_key("prometheus", {"url": "localhost:9090", "queries": {"a": "up"}})),
    Case("prometheus without queries", ("prometheus.queries", "at least 1 item"),
         set_key("prometheus", {"url": "http://127.0.0.1:9090", "queries": {}})),
    Case("prometheus bad query name", ("prometheus.queries", "should match pattern"),
         set_key("prometheus", {"url": "http://127.0.0.1:9090", "queries": {"9-bad": "up"}})),
    Case("prometheus negative step", ("prometheus.step_s", "greater than 0"),
         set_key("prometheus", {"url": "http://127.0.0.1:9090", "queries": {"a": "up"}, "step_s": -1})),
]

DATASET_CASES = [  # the replay dataset a valid spec names
    ("missing dataset file", None, ("no such dataset file",)),
    ("empty dataset", b"", ("the file is empty",)),
    ("binary dataset", bytes(range(256)) * 8, ("not a readable CSV",)),
    ("header only", (QOS_CSV_HEADER + "\n").encode(), ("header but no data rows",)),
    ("missing column", b"time,cpu,bw\n2024-05-18 11:00:00,1,2\n", ("missing column(s)",)),
    ("NaN qos", (QOS_CSV_HEADER + "\n" + GOOD_QOS_ROWS[0].rsplit(",", 1)[0] + ",nan\n").encode(),
     ("row 1", "qos", "NaN")),
    ("negative bandwidth", (QOS_CSV_HEADER + "\n" + GOOD_QOS_ROWS[0].replace(",25.0,", ",-25.0,") + "\n").encode(),
     ("row 1", "bw", "negative")),
    ("numeric times", (QOS_CSV_HEADER + "\n1,19.8,2000,25,3,6.6\n").encode(), ("column time holds numbers",)),
]


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    path = tmp_path / "good.csv"
    path.write_text(GOOD_QOS_CSV, encoding="utf-8")
    return path


@pytest.mark.parametrize("case", SPEC_CASES, ids=[case.name for case in SPEC_CASES])
def test_bad_campaign_spec(case: Case, tmp_path: Path, dataset: Path, capfd: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "campaign.yaml"
    if case.text is not None:
        spec.write_bytes(case.text)
    else:
        document = base(dataset)
        assert case.edit is not None
        case.edit(document)
        spec.write_text(yaml.safe_dump(document), encoding="utf-8")
    runs = tmp_path / "runs"
    code, _, err = run_cli(["--runs-dir", str(runs), "campaign", "run", str(spec)], capfd)
    assert code == 2, err
    assert_one_error_line(err, str(spec), *case.fragments)
    assert not runs.exists() or not any(runs.iterdir())  # nothing half-created


def test_the_base_spec_is_valid(tmp_path: Path, dataset: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """The corpus' errors come from its edits: the unedited spec runs."""
    spec = tmp_path / "campaign.yaml"
    spec.write_text(yaml.safe_dump(base(dataset)), encoding="utf-8")
    code, _, err = run_cli(["--runs-dir", str(tmp_path / "runs"), "campaign", "run", str(spec)], capfd)
    assert code == 0, err


@pytest.mark.parametrize(("name", "content", "fragments"), DATASET_CASES, ids=[c[0] for c in DATASET_CASES])
def test_bad_replay_dataset(name: str, content: bytes | None, fragments: tuple[str, ...], tmp_path: Path,
                            capfd: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data.csv"
    if content is not None:
        data.write_bytes(content)
    spec = tmp_path / "campaign.yaml"
    spec.write_text(yaml.safe_dump(base(data)), encoding="utf-8")
    runs = tmp_path / "runs"
    code, _, err = run_cli(["--runs-dir", str(runs), "campaign", "run", str(spec)], capfd)
    assert code == 2, err
    assert_one_error_line(err, str(spec), str(data), *fragments)
    assert not runs.exists()


def make_runs(tmp_path: Path) -> Path:
    """A runs root with broken run directories of several kinds."""
    runs = tmp_path / "runs"
    for name, metadata in (("garbage", b"{not json"), ("binary", bytes(range(256))),
                           ("loop", json.dumps({"kind": "loop", "status": "completed"}).encode()),
                           ("badspec", json.dumps({"kind": "campaign", "status": "running"}).encode()),
                           ("empty", json.dumps({"kind": "campaign", "status": "completed"}).encode())):
        (runs / name).mkdir(parents=True)
        (runs / name / "metadata.json").write_bytes(metadata)
    (runs / "badspec" / "spec.yaml").write_text("name: [broken\n", encoding="utf-8")
    return runs


CLI_CASES = [  # (argv after --runs-dir RUNS, fragments); {spec} is a valid spec, {runs} the runs root
    (["campaign", "resume", "no-such-run"], ("no-such-run", "no such run")),
    (["campaign", "resume", "garbage"], ("garbage", "not a readable slicebed run")),
    (["campaign", "resume", "binary"], ("binary", "not a readable slicebed run")),
    (["campaign", "resume", "loop"], ("a 'loop' run, not a campaign",)),
    (["campaign", "resume", "badspec"], ("badspec/spec.yaml", "YAML syntax error")),
    (["runs", "show", "no-such-run"], ("no-such-run", "no such run")),
    (["runs", "show", "garbage"], ("garbage", "not a readable slicebed run")),
    (["runs", "export", "empty", "--out", "{tmp}/out"], ("empty", "no samples to export")),
    (["runs", "export", "empty", "--out", "{tmp}/out", "--query", "nameless"], ("--query 'nameless'", "NAME=PROMQL")),
    (["runs", "export", "empty", "--out", "{tmp}/out", "--query", "a=up"], ("--query needs --prometheus-url",)),
    (["runs", "export", "empty", "--out", "{tmp}/out", "--query", "a=up", "--query", "a=up",
      "--prometheus-url", "http://127.0.0.1:1"], ("given twice",)),
    (["runs", "export", "empty", "--out", "{tmp}/out", "--step", "0"], ("--step 0", "positive")),
    (["runs", "export", "empty", "--out", "{tmp}/out", "--prometheus-url", "http://127.0.0.1:1", "--query", "a=up",
      "--start", "yesterday"], ("--start 'yesterday'", "ISO 8601")),
    (["runs", "export", "empty", "--out", "{tmp}/out", "--prometheus-url", "http://127.0.0.1:1", "--query", "a=up",
      "--start", "2026-11-01T00:00:00"], ("--start", "give a time zone")),
    (["runs", "export", "empty", "--out", "{tmp}/out", "--prometheus-url", "not-a-url", "--query", "a=up",
      "--start", "2026-11-01T00:00:00Z"], ("Prometheus URL 'not-a-url'",)),
    (["campaign", "run", "{spec}", "--pace", "-1"], ("--pace -1", "within [0, 100]")),
    (["campaign", "run", "{spec}", "--pace", "nan"], ("--pace nan",)),
    (["campaign", "run", "{spec}", "--pace", "fast"], ("--pace", "invalid float value")),
    (["campaign", "run", "{spec}", "--testbed", "cloud"], ("--testbed", "invalid choice")),
    (["campaign", "run", "{tmp}/missing.yaml"], ("missing.yaml", "no such file")),
    (["campaign", "run", "{tmp}"], ("no such file",)),
    (["campaign", "schedule", "{spec}", "--every", "5x"], ("--every '5x'", "30m, 6h")),
    (["campaign", "schedule", "{spec}", "--every", "30s"], ("--every '30s'", "at least one minute")),
    (["campaign", "schedule", "{spec}", "--every", "7m", "--kubernetes"], ("--every 7min", "cannot repeat exactly")),
    (["campaign", "schedule", "{spec}", "--every", "1h", "--unit-dir", "{tmp}/nowhere"], ("--unit-dir", "no such")),
    (["campaign", "schedule", "{spec}"], ("--every", "required")),
]


@pytest.mark.parametrize(("argv", "fragments"), CLI_CASES, ids=[" ".join(c[0][:3]) + f" #{i}"
                                                               for i, c in enumerate(CLI_CASES)])
def test_bad_run_directory_or_cli_value(argv: list[str], fragments: tuple[str, ...], tmp_path: Path, dataset: Path,
                                        capfd: pytest.CaptureFixture[str]) -> None:
    runs = make_runs(tmp_path)
    spec = tmp_path / "campaign.yaml"
    spec.write_text(yaml.safe_dump(base(dataset)), encoding="utf-8")
    filled = [part.format(spec=spec, tmp=tmp_path, runs=runs) for part in argv]
    before = sorted(path.name for path in runs.iterdir())
    code, _, err = run_cli(["--runs-dir", str(runs), *filled], capfd)
    assert code == 2, err
    assert_one_error_line(err, *fragments)
    assert sorted(path.name for path in runs.iterdir()) == before
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.slow
def test_real_processes_print_one_line_and_exit_2(tmp_path: Path) -> None:
    """The contract holds for the installed command too (two processes started together)."""
    garbage = tmp_path / "garbage.yaml"
    garbage.write_bytes(bytes(range(256)))
    runs = make_runs(tmp_path)
    commands = [["campaign", "run", str(garbage)], ["campaign", "resume", "loop"]]
    processes = [subprocess.Popen([str(SLICEBED), "--runs-dir", str(runs), *argv], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for argv in commands]
    for process, fragment in zip(processes, ("cannot read as UTF-8", "not a campaign"), strict=True):
        _, err = process.communicate(timeout=120)
        assert process.returncode == 2, err
        assert_one_error_line(err, fragment)


def test_runs_list_reports_unreadable_runs_instead_of_failing(tmp_path: Path,
                                                              capfd: pytest.CaptureFixture[str]) -> None:
    runs = make_runs(tmp_path)
    code = main(["--runs-dir", str(runs), "runs", "list", "--json"])
    rows = {row["run_id"]: row for row in json.loads(capfd.readouterr().out)["runs"]}
    assert code == 0
    assert rows["binary"]["status"] == rows["garbage"]["status"] == "unreadable metadata.json"
    assert rows["loop"]["kind"] == "loop"
