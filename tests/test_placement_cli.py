"""``slicebed place ...`` and ``slicebed reproduce slicepilot``: outputs, lab manifests, bad input and faults.

Bad input and faults end in one ``slicebed: error:`` line and exit 2. The overlays are rendered with the real
``kubectl kustomize`` and validated by ``.ci/verify-lab``'s manifest step against Kubernetes 1.29; applying them
goes to the contract fake of the Kubernetes API (no API server can run here), hence the ``fake`` test names.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml
from fakes.kubernetes import FakeKubernetes, write_kubeconfig
from helpers import REPO, assert_one_error_line, run_cli, venv_environment, write_file

from controller.placement.problem import build_problem
from controller.placement.rl.training import TrainingSettings, train_agent
from controller.placement.spec import PlacementSpec, load_placement_spec

TOKEN = "placement-fake-token-7731"


@pytest.fixture(scope="module")
def tiny_agents(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Agents for the default spec trained for 5 episodes: enough to load and place with."""
    torch.set_num_threads(1)
    directory = tmp_path_factory.mktemp("agents")
    problem = build_problem(PlacementSpec())
    settings = TrainingSettings(episodes=5, batch_size=8, hidden={name: [8] for name in
                                                                   ("urllc", "embb", "mmtc", "monolithic")})
    for name in (*problem.types, "monolithic"):
        train_agent(problem, name, settings, directory)
    return directory


def write_spec(tmp_path: Path, document: dict) -> Path:
    return write_file(tmp_path / "placement.yaml", document)


def test_solve_writes_the_placement_and_prints_one_json_object(tmp_path: Path,
                                                               capfd: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "placement.json"
    code, stdout, _ = run_cli(["place", "solve", "--slices", "10", "--seed", "2", "--out", str(out), "--json"], capfd)
    assert code == 0
    result = json.loads(stdout)
    assert result["details"]["status"] == "OPTIMAL" and result["score"]["sla_violations"] == 0
    document = json.loads(out.read_text())
    assert document["tiers"] == ["edge", "regional", "central"] and len(document["slices"]) == 10
    urllc = [entry for entry in document["slices"].values() if entry["type"] == "urllc"]
    assert urllc and all(entry["vnfs"]["du"] == entry["vnfs"]["upf"] == "edge" for entry in urllc)
    assert all(entry["latency_ms"] == 5 and entry["latency_bound_ms"] == 10 for entry in urllc)


def test_spec_slices_and_heuristic_human_table(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(tmp_path, {"slices": [{"name": "cam", "type": "urllc"}, {"name": "video", "type": "embb"}]})
    code, stdout, _ = run_cli(["place", "solve", "--spec", str(spec), "--method", "cost-aware"], capfd)
    assert code == 0 and "cam" in stdout and "video" in stdout and "sla_violations" in stdout


def test_agents_place_through_the_cli(tiny_agents: Path, capfd: pytest.CaptureFixture[str]) -> None:
    for method in ("slicepilot", "monolithic"):
        code, stdout, _ = run_cli(["place", "solve", "--slices", "5", "--method", method, "--agents",
                                    str(tiny_agents), "--json"], capfd)
        assert code == 0 and json.loads(stdout)["method"] == method


def test_train_quick_prints_one_json_object(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = run_cli(["place", "train", "--out", str(tmp_path), "--agent", "urllc", "--episodes", "4",
                                "--quick", "--json"], capfd)
    assert code == 0
    assert [agent["episodes"] for agent in json.loads(stdout)["agents"]] == [4]
    assert (tmp_path / "urllc.pt").is_file() and (tmp_path / "urllc.json").is_file()


BAD_SPECS = {
    "vnf-larger-than-every-tier": ({"slice_types": {"embb": {"latency_bound_ms": 20, "demands": {
        "upf": {"cpu_cores": 80, "memory_gib": 1}}}}}, ("VNF upf needs 80 cores", "more than any tier offers")),
    "latency-bound-no-placement-meets": ({"slice_types": {"urllc": {"latency_bound_ms": 3}}},
                                         ("slice_types.urllc.latency_bound_ms", "no placement meets it")),
    "unknown-slice-type": ({"slices": [{"name": "a", "type": "v2x"}]}, ("unknown slice type 'v2x'",)),
    "negative-cost": ({"tiers": [{"name": "edge", "cpu_cores": 16, "memory_gib": 16, "cost_per_core_hour": -0.1,
                                  "cost_per_gib_hour": 0.02, "upf_latency_ms": 5}]},
                      ("tiers[0].cost_per_core_hour", "greater than or equal to 0")),
    "unknown-key": ({"tier": []}, ("tier: unknown key", "allowed keys:")),
    "disconnected-tiers": ({"latency": [{"a": "edge", "b": "regional", "delay_ms": 5}]},
                           ("no link path joins tiers edge and central",)),
    "vnf-larger-than-every-flavor": ({"flavors": [{"name": "tiny", "cpu_cores": 0.5, "memory_gib": 1}]},
                                     ("fits no flavor",)),
}


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_bad_spec_is_one_line(case: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    document, fragments = BAD_SPECS[case]
    spec = write_spec(tmp_path, document)
    code, stdout, stderr = run_cli(["place", "solve", "--spec", str(spec), "--slices", "3"], capfd)
    assert code == 2 and stdout == ""
    assert_one_error_line(stderr, str(spec), *fragments)


def test_agent_trained_for_another_tier_count_is_one_line(tiny_agents: Path, tmp_path: Path,
                                                          capfd: pytest.CaptureFixture[str]) -> None:
    tiers = [tier.model_dump() for tier in PlacementSpec().tiers]
    spec = write_spec(tmp_path, {"tiers": tiers[1:], "latency": [{"a": "regional", "b": "central", "delay_ms": 10}],
                                 "slice_types": {"urllc": {"latency_bound_ms": 20}, "embb": {"latency_bound_ms": 20},
                                                 "mmtc": {"latency_bound_ms": 50}}})
    code, _, stderr = run_cli(["place", "solve", "--spec", str(spec), "--slices", "3", "--method", "slicepilot",
                                "--agents", str(tiny_agents)], capfd)
    assert code == 2
    assert_one_error_line(stderr, "was trained for 3 tiers (edge, regional, central)", "this problem has 2",
                          "retrain it")


def test_infeasible_instance_is_one_line_naming_the_binding_constraints(tmp_path: Path,
                                                                        capfd: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(tmp_path, {"slices": [{"name": f"u{i}", "type": "urllc"} for i in range(9)]})
    code, _, stderr = run_cli(["place", "solve", "--spec", str(spec)], capfd)
    assert code == 2
    assert_one_error_line(stderr, "no placement of the 9 slices", "edge CPU capacity (16 cores",
                          "latency bound of the urllc slices (10 ms)")


def test_bad_options_and_files_are_one_line(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    cases = [
        (["place", "solve"], "no `slices` to place"),
        (["place", "solve", "--slices", "0"], "--slices must be between 1 and 10000"),
        (["place", "solve", "--slices", "2", "--method", "slicepilot"], "needs --agents DIR"),
        (["place", "solve", "--slices", "2", "--method", "slicepilot", "--agents", str(tmp_path)], "no trained agent"),
        (["place", "train", "--out", str(tmp_path), "--agent", "v2x"], "--agent v2x: not an agent"),
        (["place", "manifests", str(tmp_path / "missing.json"), "--out", str(tmp_path)], "no such placement file"),
        (["place", "deploy", str(tmp_path), "--kubeconfig", str(tmp_path / "kc")], "no kustomization.yaml"),
        (["reproduce", "slicepilot", "--trials", "0"], "--trials must be >= 1"),
    ]
    for argv, fragment in cases:
        code, _, stderr = run_cli(argv, capfd)
        assert code == 2, argv
        assert_one_error_line(stderr, fragment)
    (tmp_path / "urllc.pt").write_bytes(b"not a torch file")
    code, _, stderr = run_cli(["place", "solve", "--slices", "2", "--method", "slicepilot", "--agents",
                                str(tmp_path)], capfd)
    assert code == 2
    assert_one_error_line(stderr, "urllc.pt: not a slicebed placement agent")


@pytest.fixture
def overlays(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> Path:
    placement = tmp_path / "placement.json"
    assert run_cli(["place", "solve", "--slices", "6", "--seed", "1", "--out", str(placement)], capfd)[0] == 0
    document = json.loads(placement.read_text())
    document["slices"]["s6"]["vnfs"] = None  # a rejected slice gets no overlay
    placement.write_text(json.dumps(document))
    out = tmp_path / "manifests"
    code, stdout, _ = run_cli(["place", "manifests", str(placement), "--out", str(out), "--json"], capfd)
    assert code == 0 and sorted(json.loads(stdout)["overlays"]) == ["s1", "s2", "s3", "s4", "s5"]
    return out


@pytest.mark.slow
def test_overlays_pin_each_vnf_to_its_tier_and_validate_against_1_29(overlays: Path) -> None:
    placement = json.loads((overlays.parent / "placement.json").read_text())
    rendered = subprocess.run(["kubectl", "kustomize", str(overlays / "s1")], capture_output=True, text=True,
                              check=True, env=venv_environment()).stdout
    objects = [obj for obj in yaml.safe_load_all(rendered) if obj]
    assert len(objects) == 7
    for obj in objects:
        vnf = obj["metadata"]["labels"]["app.kubernetes.io/name"]
        tier = placement["slices"]["s1"]["vnfs"][vnf]
        spec = obj["spec"]["template"]["spec"]
        assert obj["metadata"]["name"] == f"s1-{vnf}" and obj["metadata"]["namespace"] == "slicebed"
        assert spec["nodeSelector"] == {"slicebed.io/tier": tier}
        term = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        assert term == [{"matchExpressions": [{"key": "slicebed.io/tier", "operator": "In", "values": [tier]}]}]
    assert not (overlays / "s6").exists()
    check = subprocess.run([sys.executable, str(REPO / ".ci" / "verify-lab"), "--step", "manifests",
                            "--manifests-dir", str(overlays)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    checked = "6 kustomizations (5 deployable), 0 components, 42 objects checked against Kubernetes 1.29.0"
    assert checked in check.stdout  # 7 in base


@pytest.fixture
def fake_kubernetes(tmp_path: Path) -> Iterator[tuple[FakeKubernetes, Path]]:
    with FakeKubernetes(TOKEN) as server:
        yield server, write_kubeconfig(tmp_path / "kubeconfig", server.url, TOKEN)


def test_deploy_fake_creates_then_replaces_the_deployments(overlays: Path, fake_kubernetes: tuple[FakeKubernetes,
                                                           Path], capfd: pytest.CaptureFixture[str]) -> None:
    server, kubeconfig = fake_kubernetes
    argv = ["place", "deploy", str(overlays / "s1"), str(overlays / "s2"), "--kubeconfig", str(kubeconfig), "--json"]
    code, stdout, _ = run_cli(argv, capfd)
    assert code == 0 and len(json.loads(stdout)["applied"]) == 14
    deployment = server.deployments[("slicebed", "s1-upf")]
    placement = json.loads((overlays.parent / "placement.json").read_text())
    assert deployment["spec"]["template"]["spec"]["nodeSelector"] == {
        "slicebed.io/tier": placement["slices"]["s1"]["vnfs"]["upf"]}
    assert run_cli(argv, capfd)[0] == 0  # again: each Deployment exists (409) and is replaced
    assert [r.method for r in server.requests if r.path.endswith("/s1-upf")] == ["PUT"]
    wrong = kubeconfig.read_text().replace(TOKEN, "wrong-token")
    kubeconfig.write_text(wrong)
    code, _, stderr = run_cli(argv, capfd)
    assert code == 2
    assert_one_error_line(stderr, "Deployment slicebed/s1-amf: the API server answered 401")
    assert "wrong-token" not in stderr


@pytest.mark.slow
def test_reproduce_slicepilot_quick_trains_and_reports(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = run_cli(["--runs-dir", str(tmp_path), "reproduce", "slicepilot", "--quick", "--trials", "1",
                                "--json"], capfd)
    assert code == 0
    summary = json.loads(stdout)
    run = Path(summary["path"])
    assert set(summary["by_load"]) == {"5", "10", "15"}
    assert set(summary["by_load"]["15"]) == {"ilp", "ilp-online", "slicepilot", "monolithic", "cost-aware",
                                             "performance-aware", "random", "load-balancing"}
    assert "all optimal: True" in summary["targets"][0]["measured"]  # CP-SAT proved every instance (time: bench)
    for figure in ("fig8a-cost", "fig8b-speedup", "fig8c-sla", "fig8d-cpu", "fig8e-memory"):
        assert (run / "plots" / f"{figure}.png").stat().st_size > 1000
    report = (run / "report.md").read_text()
    assert "## Targets" in report and "Decision time per slice" in report
    assert json.loads((run / "metadata.json").read_text())["status"] == "completed"
    assert sorted(path.name for path in (run / "models").glob("*.pt")) == ["embb.pt", "mmtc.pt", "monolithic.pt",
                                                                          "urllc.pt"]


def test_latency_from_an_inventory_next_to_the_spec(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "inventory.yml").write_text((REPO / "inventory" / "local.yml").read_text())
    spec = write_spec(tmp_path, {"latency_inventory": "inventory.yml"})
    code, stdout, _ = run_cli(["place", "solve", "--spec", str(spec), "--slices", "3", "--json"], capfd)
    assert code == 0 and json.loads(stdout)["score"]["sla_violations"] == 0
    (tmp_path / "inventory.yml").write_text("all:\n  vars: {testbed_mode: local}\n")
    code, _, stderr = run_cli(["place", "solve", "--spec", str(spec), "--slices", "3"], capfd)
    assert code == 2
    assert_one_error_line(stderr, "inventory.yml: all.vars.latency: no latency list")


def test_example_spec_writes_out_the_defaults_and_solves(capfd: pytest.CaptureFixture[str]) -> None:
    example = REPO / "experiments" / "placement-slicepilot.yaml"
    spec = load_placement_spec(example)
    defaults = PlacementSpec().model_dump(exclude={"latency", "latency_inventory", "slices"})
    assert spec.model_dump(exclude={"latency", "latency_inventory", "slices"}) == defaults
    assert build_problem(spec).latency_ms.tolist() == [[0, 5, 15], [5, 0, 10], [15, 10, 0]]
    code, stdout, _ = run_cli(["place", "solve", "--spec", str(example), "--json"], capfd)
    assert code == 0 and len(json.loads(stdout)["slices"]) == 6
