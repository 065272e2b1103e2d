"""Bad input never ends in a traceback: one ``slicebed: error:`` line naming the file or key, exit 2.

Three corpora (experiment specs, MicroOpt CSVs, model directories) plus bad command-line values. Spec
cases go through ``load_spec``; dataset, model and argument cases through the CLI entry point
``controller.cli.main`` in-process. A sample of every corpus also runs as a real ``slicebed`` process
(started together, since each pays the torch import) to check the process-level contract.
"""

from __future__ import annotations

import copy
import json
import os
import pickle
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import (
    GOOD_QOS_CSV,
    GOOD_QOS_ROWS,
    QOS_CSV_HEADER,
    SLICEBED,
    assert_one_error_line,
    run_cli,
    set_dotted,
    slicebed_argv,
    write_file,
)

from analysis.slice_model import MODEL_FILE, EnsembleConfig, ModelSupport, TargetScale, build_model, save_model
from controller.spec import load_spec
from core.errors import InputError

# --- experiment specs -------------------------------------------------------------------------------

def base_spec(dataset: Path) -> dict[str, Any]:
    """A small valid spec replaying ``dataset``."""
    return {
        "name": "bad-input",
        "testbed": {"backend": "replay", "replay": {"source": "dataset", "dataset": str(dataset)}},
        "slices": [{
            "name": "embb", "q_thresh": 4.0, "beta_thresh": 0.2,
            "bounds": {"cpu_millicores": [500, 4000], "bandwidth_mbps": [5, 40]},
            "traffic": [{"kind": "constant", "users": 2},
                        {"kind": "truncated_normal", "mean": 3, "std": 1, "low": 1, "high": 5}],
        }],
        "sweep": {"users": [1, 2, 3, 4, 5], "cpu_millicores": [1000, 2000], "bandwidth_mbps": [10, 25], "dwell_s": 20},
        "training": {"epochs": 5},
    }


SpecMaker = Callable[[dict[str, Any], Path], "dict[str, Any] | list[Any] | str | bytes | None"]


def setting(dotted: str, value: Any) -> SpecMaker:
    """Set ``dotted`` (e.g. ``slices.0.beta_thresh``) to ``value``."""
    def make(document: dict[str, Any], _directory: Path) -> dict[str, Any]:
        set_dotted(document, dotted, value)
        return document
    return make


def without(dotted: str) -> SpecMaker:
    """Remove the key ``dotted``."""
    def make(document: dict[str, Any], _directory: Path) -> dict[str, Any]:
        set_dotted(document, dotted, ...)
        return document
    return make


def content(text: str | bytes | None) -> SpecMaker:
    """The spec file's raw content (None: no file at all)."""
    return lambda _document, _directory: text


def duplicate_slice(document: dict[str, Any], _directory: Path) -> dict[str, Any]:
    document["slices"].append(copy.deepcopy(document["slices"][0]))
    return document


def uneven_levels(document: dict[str, Any], _directory: Path) -> dict[str, Any]:
    document["slices"].append({**copy.deepcopy(document["slices"][0]), "name": "urllc",
                               "traffic": [{"kind": "constant", "users": 1}]})
    return document


def trace_file(text: str) -> SpecMaker:
    """Traffic level 0 replays a trace file holding ``text``."""
    def make(document: dict[str, Any], directory: Path) -> dict[str, Any]:
        (directory / "trace.txt").write_text(text, encoding="utf-8")
        document["slices"][0]["traffic"][0] = {"kind": "trace", "file": "trace.txt"}
        return document
    return make


TOP_KEYS = "description, name, optimizer, resources, rounds, seed, slices, sweep, testbed, training, validation"
SPEC_CASES = [
    pytest.param(content("name: [unclosed\nrounds: 1\n"), ["line 2", "YAML syntax error"], id="yaml-syntax"),
    pytest.param(content("name: x\n\trounds: 1\n"), ["YAML syntax error", "'\\t'"], id="yaml-tab"),
    pytest.param(content(""), ["the file is empty"], id="empty"),
    pytest.param(content(" \n\n"), ["the file is empty"], id="blank"),
    pytest.param(content(bytes(range(128, 256)) * 8), ["cannot read as UTF-8"], id="binary"),
    pytest.param(content(b"name: \x00\x01\x02"), ["YAML syntax error", "special characters"], id="control-chars"),
    pytest.param(content("- name: x\n- rounds: 1\n"), ["expected a mapping", "got list"], id="top-level-list"),
    pytest.param(content("just words"), ["expected a mapping", "got str"], id="top-level-scalar"),
    pytest.param(content("!!python/object:os.system {}\n"), ["YAML syntax error", "constructor"], id="python-tag"),
    pytest.param(content(None), ["no such file"], id="missing-file"),
    pytest.param(setting("colour", "red"), [f"colour: unknown key (allowed keys: {TOP_KEYS})"], id="unknown-top"),
    pytest.param(setting("slices.0.bounds.gpu", [1, 2]),
                 ["slices[0].bounds.gpu: unknown key (allowed keys: bandwidth_mbps, cpu_millicores)"],
                 id="unknown-nested"),
    pytest.param(setting("slices.0.traffic.1.sigma", 1),
                 ["slices[0].traffic[1].sigma: unknown key "
                  "(allowed keys: high, kind, low, mean, points, std, whole_users)"],
                 id="unknown-in-traffic"),
    pytest.param(setting("testbed.replay.path", "x.csv"),
                 ["testbed.replay.path: unknown key (allowed keys: dataset, model, settle_s, source)"],
                 id="unknown-in-replay"),
    pytest.param(setting("slices.0.bounds.constant", [1, 2]),
                 ["slices[0].bounds.constant: unknown key (allowed keys: bandwidth_mbps, cpu_millicores)"],
                 id="unknown-named-like-a-traffic-kind"),
    pytest.param(setting("optimizer", {"microopt": {"lr": 0.1}}),
                 ["optimizer.microopt.lr: unknown key (allowed keys:", "lr_allocation"], id="unknown-in-optimizer"),
    pytest.param(without("sweep"), ["sweep: required key is missing"], id="missing-sweep"),
    pytest.param(without("slices.0.q_thresh"), ["slices[0].q_thresh: required key is missing"], id="missing-q"),
    pytest.param(without("sweep.dwell_s"), ["sweep.dwell_s: required key is missing"], id="missing-dwell"),
    pytest.param(setting("rounds", "many"), ["rounds:", "valid integer", "'many'"], id="rounds-text"),
    pytest.param(setting("slices", {"embb": {}}), ["slices:", "valid list"], id="slices-mapping"),
    pytest.param(setting("sweep.users", "1,2"), ["sweep.users:", "valid list", "'1,2'"], id="users-text"),
    pytest.param(setting("sweep.dwell_s", 1.5), ["sweep.dwell_s:", "fractional part", "1.5"], id="dwell-fraction"),
    pytest.param(setting("slices.0.beta_thresh", 1.5), ["slices[0].beta_thresh:", "less than 1", "1.5"],
                 id="beta-1.5"),
    pytest.param(setting("slices.0.q_thresh", -1), ["slices[0].q_thresh:", "greater than 0", "-1"], id="q-negative"),
    pytest.param(setting("slices.0.q_thresh", float("nan")), ["slices[0].q_thresh:", "finite number", "nan"],
                 id="q-nan"),
    pytest.param(setting("resources", {"capacity": {"cpu_millicores": float("inf"), "bandwidth_mbps": 100}}),
                 ["resources.capacity.cpu_millicores:", "finite number", "inf"], id="capacity-inf"),
    pytest.param(setting("sweep.dwell_s", 0), ["sweep.dwell_s:", "greater than or equal to 1", "0"], id="dwell-0"),
    pytest.param(setting("sweep.bandwidth_mbps", [10, -5]), ["sweep.bandwidth_mbps[1]:", "greater than 0"],
                 id="bandwidth-negative"),
    pytest.param(setting("slices.0.traffic.0.users", 0), ["slices[0].traffic[0].users:", "greater than 0"],
                 id="users-0"),
    pytest.param(duplicate_slice, ["slices: duplicate slice name(s): embb"], id="duplicate-slices"),
    pytest.param(setting("slices.0.traffic.1.low", 5), ["slices[0].traffic[1]: low (5.0) must be below high (5.0)"],
                 id="normal-low-equals-high"),
    pytest.param(setting("slices.0.traffic.1.mean", 900), ["slices[0].traffic[1]:", "no probability mass"],
                 id="normal-without-mass"),
    pytest.param(setting("slices.0.bounds.cpu_millicores", [4000, 500]),
                 ["slices[0].bounds: cpu_millicores: min 4000.0 is above max 500.0"], id="bounds-reversed"),
    pytest.param(setting("slices.0.bounds.bandwidth_mbps", [5, 10, 40]),
                 ["slices[0].bounds.bandwidth_mbps:", "at most 2 items"], id="bounds-three"),
    pytest.param(setting("slices.0.bounds.cpu_millicores", [0, 500]),
                 ["slices[0].bounds.cpu_millicores[0]:", "greater than 0"], id="bounds-zero"),
    pytest.param(setting("training.settle_s", 20), ["training.settle_s (20) must be below sweep.dwell_s (20)"],
                 id="settle-eats-dwell"),
    pytest.param(without("testbed.replay.dataset"), ["testbed.replay: source 'dataset' needs 'dataset: CSV'"],
                 id="replay-dataset-without-path"),
    pytest.param(setting("testbed.replay.source", "model"), ["testbed.replay: source 'model' needs 'model: DIR'"],
                 id="replay-model-without-path"),
    pytest.param(setting("testbed.backend", "cloud"), ["testbed.backend:", "'replay', 'local' or 'lab'", "'cloud'"],
                 id="unknown-backend"),
    pytest.param(setting("slices.0.traffic.0.kind", "poisson"), ["slices[0].traffic[0]:", "'poisson'"],
                 id="unknown-traffic-kind"),
    pytest.param(without("slices.0.traffic.0.kind"), ["slices[0].traffic[0]:", "discriminator 'kind'"],
                 id="traffic-without-kind"),
    pytest.param(setting("slices.0.name", "Bad Name"), ["slices[0].name:", "'Bad Name'"], id="slice-name"),
    pytest.param(uneven_levels, ["slices: every slice needs the same number of traffic levels"], id="uneven-levels"),
    pytest.param(trace_file("2\n-1\n3\n"), ["slices[0].traffic[0]:", "finite and > 0"], id="trace-negative"),
    pytest.param(trace_file("# users/s, one a line\n"), ["slices[0].traffic[0]: traffic trace is empty"],
                 id="trace-empty"),
    pytest.param(setting("slices.0.traffic.0", {"kind": "trace", "file": "absent.txt"}),
                 ["slices[0].traffic[0]:", "absent.txt", "not a one-column users/s trace"], id="trace-missing"),
]


def test_the_base_spec_is_valid(tmp_path: Path, microopt_csv: Path) -> None:
    """The corpus edits a spec that loads, so each error comes from its edit."""
    spec = load_spec(write_file(tmp_path / "spec.yaml", base_spec(microopt_csv)))
    assert spec.slices[0].name == "embb" and spec.testbed.replay is not None


@pytest.mark.parametrize(("make", "fragments"), SPEC_CASES)
def test_bad_spec_is_one_clear_error(tmp_path: Path, microopt_csv: Path, make: SpecMaker,
                                     fragments: list[str]) -> None:
    """load_spec raises one InputError line that names the file, the key and the problem."""
    path = write_file(tmp_path / "spec.yaml", make(base_spec(microopt_csv), tmp_path))
    with pytest.raises(InputError) as caught:
        load_spec(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    for fragment in fragments:
        assert fragment in message


# --- MicroOpt CSVs ------------------------------------------------------------------------------------

CsvMaker = Callable[[Path], None]
"""Writes a bad CSV at the given path (or leaves it absent)."""


def rows_with(row: int, column: str, value: str, rows: int = 20) -> CsvMaker:
    """The good CSV with data row ``row`` (1-based) holding ``value`` in ``column``."""
    index = QOS_CSV_HEADER.split(",").index(column)

    def make(path: Path) -> None:
        lines = [line.split(",") for line in GOOD_QOS_ROWS[:rows]]
        lines[row - 1][index] = value
        path.write_text("\n".join([QOS_CSV_HEADER, *(",".join(line) for line in lines)]) + "\n", encoding="utf-8")
    return make


def csv_bytes(data: str | bytes) -> CsvMaker:
    def make(path: Path) -> None:
        path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return make


def dropped_columns(*columns: str) -> CsvMaker:
    keep = [index for index, name in enumerate(QOS_CSV_HEADER.split(",")) if name not in columns]
    lines = [QOS_CSV_HEADER, *GOOD_QOS_ROWS]
    return csv_bytes("\n".join(",".join(line.split(",")[i] for i in keep) for line in lines) + "\n")


def good_with_times(times: list[str]) -> CsvMaker:
    rest = [line.split(",", 1)[1] for line in GOOD_QOS_ROWS]
    return csv_bytes("\n".join([QOS_CSV_HEADER, *(f"{t},{r}" for t, r in zip(times, rest, strict=False))]) + "\n")


CSV_CASES = [
    pytest.param(dropped_columns("qos"), [f"missing column(s) qos; expected {QOS_CSV_HEADER}"],
                 id="missing-qos-column"),
    pytest.param(dropped_columns("time", "cpu"), ["missing column(s) time, cpu"], id="missing-two-columns"),
    pytest.param(rows_with(3, "qos", "nan"), ["row 3: column qos is empty or NaN"], id="nan-qos"),
    pytest.param(rows_with(20, "qos", ""), ["row 20: column qos is empty or NaN"], id="empty-qos"),
    pytest.param(rows_with(2, "cpu", "-500"), ["row 2: column cpu is negative"], id="negative-cpu"),
    pytest.param(rows_with(4, "bw", "inf"), ["row 4: column bw is infinite"], id="infinite-bw"),
    pytest.param(rows_with(5, "n_users", "three"), ["row 5: column n_users is not a number"], id="text-users"),
    pytest.param(rows_with(1, "cpu", "2,000"), ["not a readable CSV file"], id="ragged-row"),
    pytest.param(rows_with(6, "n_users", "0"), ["row 6: n_users must be > 0"], id="zero-users"),
    pytest.param(rows_with(7, "time", "yesterday"), ["row 7: column time is not an ISO 8601 timestamp: 'yesterday'"],
                 id="text-timestamp"),
    pytest.param(rows_with(8, "time", "2024-13-45 25:61:00"), ["row 8: column time is not an ISO 8601 timestamp"],
                 id="impossible-timestamp"),
    pytest.param(good_with_times([str(1716030000 + s) for s in range(20)]), ["column time holds numbers"],
                 id="epoch-timestamps"),
    pytest.param(good_with_times([""] * 20), ["column time is empty"], id="no-timestamps"),
    pytest.param(good_with_times(["2024-05-18 11:00:00Z", *(f"2024-05-18 11:00:{s:02d}" for s in range(1, 20))]),
                 ["column time mixes time zones"], id="mixed-time-zones"),
    pytest.param(rows_with(1, "time", "2024-05-18 11:00:00", rows=5),
                 ["no sample is 10 s or more after its grid point started"], id="settling-drops-everything"),
    pytest.param(csv_bytes(b""), ["the file is empty; expected a header " + QOS_CSV_HEADER], id="empty-file"),
    pytest.param(csv_bytes(b"\n \n"), ["the file is empty"], id="blank-file"),
    pytest.param(csv_bytes(QOS_CSV_HEADER + "\n"), ["the file has a header but no data rows"], id="header-only"),
    pytest.param(csv_bytes(GOOD_QOS_CSV.replace(",", ";")), ["missing column(s) time"], id="semicolons"),
    pytest.param(csv_bytes(GOOD_QOS_CSV.encode() + b"2024-05-18 11:00:30,\xe9\xff,1,1,1,1\n"),
                 ["not a readable CSV file", "utf-8"], id="not-utf8"),
    pytest.param(csv_bytes(bytes(range(256)) * 4), ["not a readable CSV file"], id="binary-garbage"),
    pytest.param(lambda _path: None, ["no such dataset file"], id="missing-file"),
    pytest.param(lambda path: path.mkdir(), ["no such dataset file"], id="a-directory"),
]


@pytest.fixture(scope="module")
def blank_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid checkpoint of an untrained slice model (as good as any for input checks)."""
    directory = tmp_path_factory.mktemp("blank-model")
    support = ModelSupport(users=(1, 5), bandwidth=(5, 40), cpu=(500, 4000))
    save_model(build_model(EnsembleConfig(), TargetScale(0, 1), support), directory)
    return directory


def dataset_argv(command: str, csv: Path, directory: Path, model: Path) -> list[str]:
    """``slicebed model train`` or ``model eval`` reading ``csv``."""
    if command == "train":
        return ["model", "train", "--data", str(csv), "--out", str(directory / "out"), "--epochs", "1",
                "--folds", "0", "--no-calibrate"]
    return ["model", "eval", "--model", str(model), "--data", str(csv), "--json"]


@pytest.mark.parametrize("command", ["train", "eval"])
def test_the_good_csv_is_accepted(tmp_path: Path, blank_model_dir: Path, command: str,
                                  capfd: pytest.CaptureFixture[str]) -> None:
    """The corpus edits a CSV both commands accept, so each error comes from its edit."""
    csv = tmp_path / "good.csv"
    csv_bytes(GOOD_QOS_CSV)(csv)
    code, out, err = run_cli(dataset_argv(command, csv, tmp_path, blank_model_dir), capfd)
    assert code == 0, err
    assert "Traceback" not in err
    if command == "train":
        assert (tmp_path / "out" / MODEL_FILE).is_file()
    else:
        assert json.loads(out)["n"] == 10  # 20 rows, the first 10 s dropped


@pytest.mark.parametrize("command", ["train", "eval"])
@pytest.mark.parametrize(("make", "fragments"), CSV_CASES)
def test_bad_csv_is_one_clear_error(tmp_path: Path, blank_model_dir: Path, make: CsvMaker, fragments: list[str],
                                    command: str, capfd: pytest.CaptureFixture[str]) -> None:
    """model train and model eval stop with one line naming the CSV and the problem, and write nothing."""
    csv = tmp_path / "data.csv"
    make(csv)
    code, out, err = run_cli(dataset_argv(command, csv, tmp_path, blank_model_dir), capfd)
    assert code == 2
    assert out == ""
    assert_one_error_line(err, f"slicebed: error: {csv}: ", *fragments)
    assert not (tmp_path / "out").exists()


# --- model directories --------------------------------------------------------------------------------

ModelMaker = Callable[[Path, Path], Path]
"""Builds a bad model directory under the first path from the good one (second); returns what --model gets."""


def checkpoint_with(**changes: Any) -> ModelMaker:
    """A copy of a real checkpoint with keys changed (``None`` deletes the key)."""
    def make(directory: Path, good: Path) -> Path:
        checkpoint = torch.load(good / MODEL_FILE, map_location="cpu", weights_only=True)
        for key, value in changes.items():
            if value is None:
                del checkpoint[key]
            else:
                checkpoint[key] = value
        directory.mkdir()
        torch.save(checkpoint, directory / MODEL_FILE)
        return directory
    return make


def model_file(write: Callable[[Path], None]) -> ModelMaker:
    """A directory whose model.pt is whatever ``write`` puts there."""
    def make(directory: Path, _good: Path) -> Path:
        directory.mkdir()
        write(directory / MODEL_FILE)
        return directory
    return make


class Payload:
    """Unpickled, it makes the directory ``marker``: proof that loading a model file ran its code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.mkdir, (str(self.marker),)


def pickle_payload(path: Path) -> None:
    """A model.pt that is a plain pickle (protocol 5: torch warns about it) whose loading would run code."""
    with path.open("wb") as handle:
        pickle.dump({"format": "slicebed.slice_model", "state_dict": Payload(path.parent / PAYLOAD_RAN)}, handle,
                    protocol=5)


PAYLOAD_RAN = "payload-ran"
ARCHITECTURE = {"members": 5, "width": 32, "depth": 2, "monotone": True, "link_bound": True}
MODEL_CASES = [
    pytest.param(lambda directory, _good: directory, ["no slice model here (expected model.pt"], id="missing-dir"),
    pytest.param(lambda directory, _good: directory.mkdir() or directory, ["no slice model here"], id="empty-dir"),
    pytest.param(model_file(lambda path: path.write_bytes(b"PK\x03\x04 not a checkpoint")),
                 ["not a readable slicebed model checkpoint"], id="garbage-model-pt"),
    pytest.param(model_file(lambda path: torch.save(torch.zeros(3), path)),
                 ["not a slicebed slice-model checkpoint"], id="tensor-model-pt"),
    pytest.param(model_file(lambda path: torch.save({"epoch": 3, "weights": {}}, path)),
                 ["not a slicebed slice-model checkpoint"], id="foreign-checkpoint"),
    pytest.param(checkpoint_with(format="other.model"), ["not a slicebed slice-model checkpoint"], id="wrong-format"),
    pytest.param(checkpoint_with(version=1, slicebed_version="0.3.0"),
                 ["checkpoint version 1 (written by slicebed 0.3.0) is not supported", "retrain"], id="older-slicebed"),
    pytest.param(checkpoint_with(version=3), ["checkpoint version 3", "is not supported", "retrain"], id="version-3"),
    pytest.param(checkpoint_with(version=None), ["checkpoint version None", "is not supported"], id="no-version"),
    pytest.param(checkpoint_with(arch="transformer"), ["unknown model architecture 'transformer'"], id="unknown-arch"),
    pytest.param(checkpoint_with(support=None), ["no valid architecture, QoS scale or support recorded"],
                 id="no-support"),
    pytest.param(checkpoint_with(support={"users": [5, 1], "bandwidth": [5, 40], "cpu": [500, 4000]}),
                 ["users range [5, 1] is not a finite [low, high]"], id="reversed-support"),
    pytest.param(checkpoint_with(sigma_scale=-1.0), ["recorded sigma scale -1.0 is not a positive number"],
                 id="negative-sigma-scale"),
    pytest.param(checkpoint_with(features=["cpu", "bw", "n_users"]), ["model inputs ['cpu', 'bw', 'n_users'] differ"],
                 id="features-reordered"),
    pytest.param(checkpoint_with(config={**ARCHITECTURE, "width": 64}),
                 ["weights do not match the recorded architecture", "size mismatch"], id="wider-architecture"),
    pytest.param(checkpoint_with(config={**ARCHITECTURE, "depth": 3}),
                 ["weights do not match the recorded architecture", "Missing key(s)"], id="deeper-architecture"),
    pytest.param(checkpoint_with(config={**ARCHITECTURE, "depth": 0}), ["model depth must be a positive integer"],
                 id="zero-depth"),
    pytest.param(checkpoint_with(config=None), ["no valid architecture, QoS scale or support recorded"],
                 id="no-architecture"),
    pytest.param(checkpoint_with(state_dict={}), ["weights do not match", "Missing key(s)"], id="no-weights"),
    pytest.param(checkpoint_with(scale={"low": float("nan"), "high": 1.0}), ["recorded QoS scale"], id="nan-scale"),
    pytest.param(lambda directory, _good: (directory.mkdir(), csv_bytes(GOOD_QOS_CSV)(directory / "x.csv"))
                 and directory / "x.csv", ["not a readable slicebed model checkpoint"], id="a-csv-file"),
    pytest.param(model_file(pickle_payload), ["not a readable slicebed model checkpoint (UnpicklingError)"],
                 id="pickle-payload"),
]


def model_argv(command: str, model: Path, csv: Path) -> list[str]:
    """``slicebed optimize`` or ``model eval`` with ``--model model``."""
    if command == "optimize":
        return ["optimize", "--model", str(model), "--users", "3", "--q-thresh", "4", "--beta", "0.2", "--json"]
    return ["model", "eval", "--model", str(model), "--data", str(csv), "--json"]


@pytest.mark.parametrize("command", ["optimize", "eval"])
@pytest.mark.parametrize(("make", "fragments"), MODEL_CASES)
def test_bad_model_dir_is_one_clear_error(tmp_path: Path, blank_model_dir: Path, make: ModelMaker,
                                          fragments: list[str], command: str,
                                          capfd: pytest.CaptureFixture[str]) -> None:
    """optimize and model eval stop with one line naming the model path and the problem."""
    csv = tmp_path / "good.csv"
    csv_bytes(GOOD_QOS_CSV)(csv)
    model = make(tmp_path / "model", blank_model_dir)
    code, out, err = run_cli(model_argv(command, model, csv), capfd)
    assert code == 2
    assert out == ""
    assert_one_error_line(err, f"slicebed: error: {model}", *fragments)


# --- command-line values ------------------------------------------------------------------------------

OPTIMIZE: dict[str, str | list[str] | None] = {"--users": "3", "--q-thresh": "4", "--beta": "0.2"}
ARG_CASES = [
    pytest.param({"--beta": "1.5"}, ["--beta must be in (0, 1), got 1.5"], id="beta-1.5"),
    pytest.param({"--beta": "0"}, ["--beta must be in (0, 1), got 0"], id="beta-0"),
    pytest.param({"--beta": "abc"}, ["slicebed optimize: argument --beta: invalid float value: 'abc'"],
                 id="beta-text"),
    pytest.param({"--q-thresh": "-1"}, ["--q-thresh must be a finite number > 0", "got -1"], id="q-negative"),
    pytest.param({"--q-thresh": "nan"}, ["--q-thresh must be a finite number > 0", "got nan"], id="q-nan"),
    pytest.param({"--users": "0"}, ["--users must be a finite number > 0, got 0"], id="users-0"),
    pytest.param({"--cpu-bounds": ["4000", "500"]}, ["--cpu-bounds must be finite with 0 < MIN <= MAX, got 4000 500"],
                 id="cpu-bounds-reversed"),
    pytest.param({"--bw-bounds": ["-5", "50"]}, ["--bw-bounds must be finite", "got -5 50"], id="bw-bounds-negative"),
    pytest.param({"--method": "annealing"}, ["argument --method: invalid choice: 'annealing'"], id="unknown-method"),
    pytest.param({"--users": None, "--traffic": "{kind: truncated_normal, mean: 3, std: 1, low: 5, high: 1}"},
                 ["--traffic:", "low (5.0) must be below high (1.0)"], id="traffic-low-above-high"),
    pytest.param({"--users": None, "--traffic": "{kind: constant, users: 2, colour: red}"},
                 ["--traffic:", "colour"], id="traffic-unknown-key"),
    pytest.param({"--users": None, "--traffic": "{kind: constant, users: [2"}, ["--traffic: not YAML"],
                 id="traffic-not-yaml"),
    pytest.param({"--users": None, "--traffic": "missing.yaml"}, ["--traffic: missing.yaml: not a readable YAML file"],
                 id="traffic-file-missing"),
    pytest.param({"--users": None}, ["one of the arguments --users --traffic is required"], id="no-traffic"),
]


def optimize_argv(model: Path, overrides: dict[str, str | list[str] | None]) -> list[str]:
    """``slicebed optimize --json`` with OPTIMIZE's options updated by ``overrides`` (None drops an option)."""
    argv = ["optimize", "--model", str(model), "--json"]
    for option, value in {**OPTIMIZE, **overrides}.items():
        if value is not None:
            argv += [option, *([value] if isinstance(value, str) else value)]
    return argv


@pytest.mark.parametrize(("overrides", "fragments"), ARG_CASES)
def test_bad_optimize_value_is_one_clear_error(blank_model_dir: Path, overrides: dict[str, str | list[str] | None],
                                               fragments: list[str], capfd: pytest.CaptureFixture[str]) -> None:
    """Out-of-range or malformed optimize options stop with one line naming the option."""
    code, out, err = run_cli(optimize_argv(blank_model_dir, overrides), capfd)
    assert code == 2
    assert out == ""
    assert_one_error_line(err, *fragments)


# --- the same contract from a real process ------------------------------------------------------------

def corpus_case(corpus: list[Any], case_id: str) -> tuple[Any, ...]:
    """The values of the parametrized case ``case_id`` of ``corpus``."""
    return next(case.values for case in corpus if case.id == case_id)


@dataclass(frozen=True)
class Invocation:
    """A slicebed command line for one bad input, the path or option its error must name, and fragments."""

    argv: list[str]
    named: str
    fragments: list[str]


Builder = Callable[[Path, Path, Path], Invocation]
"""Makes an invocation from a fresh directory, the shared CSV and a good model directory."""


def loop_spec(case_id: str) -> Builder:
    def build(directory: Path, dataset: Path, _model: Path) -> Invocation:
        make, fragments = corpus_case(SPEC_CASES, case_id)
        path = write_file(directory / "spec.yaml", make(base_spec(dataset), directory))
        return Invocation(["loop", "run", str(path)], str(path), fragments)
    return build


def loop_input(dotted: str, bad: Callable[[Path, Path], Path], fragments: list[str]) -> Builder:
    """A valid spec whose ``dotted`` key points at the bad file or directory ``bad`` makes."""
    def build(directory: Path, dataset: Path, model: Path) -> Invocation:
        target = bad(directory, model)
        path = write_file(directory / "spec.yaml", setting(dotted, str(target))(base_spec(dataset), directory))
        return Invocation(["loop", "run", str(path)], str(target), fragments)
    return build


def bad_csv(case_id: str) -> Callable[[Path, Path], Path]:
    def make(directory: Path, _model: Path) -> Path:
        corpus_case(CSV_CASES, case_id)[0](directory / "data.csv")
        return directory / "data.csv"
    return make


def bad_model(case_id: str) -> Callable[[Path, Path], Path]:
    return lambda directory, model: corpus_case(MODEL_CASES, case_id)[0](directory / "model", model)


def dataset_command(command: str, case_id: str) -> Builder:
    def build(directory: Path, _dataset: Path, model: Path) -> Invocation:
        csv = bad_csv(case_id)(directory, model)
        return Invocation(dataset_argv(command, csv, directory, model), str(csv), corpus_case(CSV_CASES, case_id)[1])
    return build


def model_command(case_id: str) -> Builder:
    def build(directory: Path, dataset: Path, model: Path) -> Invocation:
        bad = bad_model(case_id)(directory, model)
        return Invocation(model_argv("optimize", bad, dataset), str(bad), corpus_case(MODEL_CASES, case_id)[1])
    return build


def optimize_values(case_id: str) -> Builder:
    def build(_directory: Path, _dataset: Path, model: Path) -> Invocation:
        overrides, fragments = corpus_case(ARG_CASES, case_id)
        return Invocation(optimize_argv(model, overrides), next(iter(overrides)), fragments)
    return build


PROCESS_CASES = [
    pytest.param(loop_spec("yaml-syntax"), id="loop-yaml-syntax"),
    pytest.param(loop_spec("unknown-nested"), id="loop-unknown-nested-key"),
    pytest.param(loop_spec("trace-empty"), id="loop-trace-empty"),
    pytest.param(loop_input("testbed.replay.dataset", bad_csv("nan-qos"), ["row 3: column qos is empty or NaN"]),
                 id="loop-replay-dataset-nan"),
    pytest.param(loop_input("slices.0.model", bad_model("older-slicebed"), ["checkpoint version 1"]),
                 id="loop-slice-model-older-slicebed"),
    pytest.param(dataset_command("train", "missing-qos-column"), id="train-missing-column"),
    pytest.param(model_command("garbage-model-pt"), id="optimize-garbage-model"),
    pytest.param(model_command("pickle-payload"), id="optimize-pickle-payload"),
    pytest.param(optimize_values("beta-1.5"), id="optimize-beta-1.5"),
    pytest.param(optimize_values("beta-text"), id="optimize-beta-text"),
]


@pytest.fixture(scope="module")
def processes(tmp_path_factory: pytest.TempPathFactory, microopt_csv: Path,
              blank_model_dir: Path) -> Iterator[dict[str, tuple[subprocess.Popen[str], Path, Invocation]]]:
    """Every PROCESS_CASES command, started at once (each process spends seconds importing torch)."""
    started = {}
    for case in PROCESS_CASES:
        directory = tmp_path_factory.mktemp(case.id)
        invocation = case.values[0](directory, microopt_csv, blank_model_dir)
        process = subprocess.Popen(
            slicebed_argv(*invocation.argv, runs=directory / "runs"),
            cwd=directory, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        started[case.id] = (process, directory, invocation)
    yield started
    for process, _directory, _invocation in started.values():
        if process.poll() is None:
            process.kill()
            process.communicate()


@pytest.mark.parametrize("case_id", [case.id for case in PROCESS_CASES])
def test_slicebed_process_reports_one_line(processes: dict[str, tuple[subprocess.Popen[str], Path, Invocation]],
                                           case_id: str) -> None:
    """The installed command exits 2 with one error line naming the input, no traceback, and no run."""
    process, directory, invocation = processes[case_id]
    out, err = process.communicate(timeout=300)
    assert process.returncode == 2, err
    assert out == ""
    assert_one_error_line(err, invocation.named, *invocation.fragments)
    assert not (directory / "runs").exists()


def test_a_pickle_payload_is_live_and_slicebed_never_runs_it(
        processes: dict[str, tuple[subprocess.Popen[str], Path, Invocation]], tmp_path: Path) -> None:
    """The payload runs when the file is unpickled as such; slicebed refused it (one line, above) without."""
    process, directory, _invocation = processes["optimize-pickle-payload"]
    process.wait(timeout=300)
    assert process.returncode == 2
    assert not (directory / "model" / PAYLOAD_RAN).exists()
    pickle_payload(tmp_path / MODEL_FILE)
    with (tmp_path / MODEL_FILE).open("rb") as handle:
        pickle.load(handle)  # what an unsafe loader would do
    assert (tmp_path / PAYLOAD_RAN).is_dir()


def test_infeasible_problem_is_a_best_effort_answer(trained_model_dir: Path, tmp_path: Path) -> None:
    """No allocation reaches 50 Mbps per user: exit 0 with feasible false and the least-violating allocation."""
    result = subprocess.run(
        [str(SLICEBED), "optimize", "--model", str(trained_model_dir), "--users", "3", "--q-thresh", "50",
         "--beta", "0.2", "--json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "error" not in result.stderr
    answer = json.loads(result.stdout)
    assert answer["feasible"] is False
    assert 0.2 < answer["expected_degradation"] <= 1.0
    assert 500 <= answer["cpu_millicores"] <= 4500 and 5 <= answer["bandwidth_mbps"] <= 50
