"""Contract fake of the Kubernetes API server for in-place pod resize, from the published Kubernetes API.

Served: ``GET /version``; ``GET /api/v1/namespaces/{ns}/pods`` (``labelSelector`` equality terms);
``GET /api/v1/namespaces/{ns}/pods/{name}``; and the resize itself as the server version defines it:
before 1.33 a strategic-merge ``PATCH`` of the pod whose only change is ``spec.containers[].resources``
(InPlacePodVerticalScaling), from 1.33 the same patch on ``pods/{name}/resize`` (patching the pod's
resources directly is then Forbidden). A Guaranteed pod must keep requests == limits (its QoS class is
immutable); a CPU beyond the node's allocatable is marked Infeasible. The kubelet applies an accepted resize
by the next read. Also ``POST /apis/apps/v1/namespaces/{ns}/deployments`` (409 AlreadyExists when the name is
taken), ``PUT`` and ``GET`` of ``.../deployments/{name}``: Deployments are stored as sent (the placement overlays).
Requests need ``Authorization: Bearer <token>``; errors are ``Status`` objects.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from fakes.http import HttpError, JsonServer, Request, Response

PATCH_TYPES = ("application/strategic-merge-patch+json", "application/merge-patch+json")


def millicores(quantity: str) -> float:
    return float(quantity[:-1]) if quantity.endswith("m") else float(quantity) * 1000


def write_kubeconfig(path: Path, server_url: str, token: str) -> Path:
    """A kubeconfig at ``path`` whose current context reaches ``server_url`` with a bearer ``token``."""
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "lab",
        "clusters": [{"name": "lab", "cluster": {"server": server_url}}],
        "users": [{"name": "admin", "user": {"token": token}}],
        "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "admin"}}]}))
    return path


class FakeKubernetes(JsonServer):
    """An API server with pods ``{(namespace, name): pod}`` on a node of ``allocatable_cpu`` millicores."""

    def __init__(self, token: str, minor: int = 29, allocatable_cpu: float = 8000) -> None:
        super().__init__()
        self.token, self.minor, self.allocatable_cpu = token, minor, allocatable_cpu
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.pending: dict[tuple[str, str], bool] = {}
        pods = "/api/v1/namespaces/(?P<ns>[a-z0-9-]+)/pods"
        self.route("GET", "/version", self._version)
        self.route("GET", pods, self._list)
        self.route("GET", pods + "/(?P<name>[a-z0-9.-]+)", self._read)
        self.route("PATCH", pods + "/(?P<name>[a-z0-9.-]+)", self._patch_pod)
        self.route("PATCH", pods + "/(?P<name>[a-z0-9.-]+)/resize", self._patch_resize)
        self.deployments: dict[tuple[str, str], dict[str, Any]] = {}
        deployments = "/apis/apps/v1/namespaces/(?P<ns>[a-z0-9-]+)/deployments"
        self.route("POST", deployments, self._create_deployment)
        self.route("PUT", deployments + "/(?P<name>[a-z0-9.-]+)", self._replace_deployment)
        self.route("GET", deployments + "/(?P<name>[a-z0-9.-]+)", self._read_deployment)

    def add_pod(self, namespace: str, name: str, labels: dict[str, str], container: str, cpu: str,
                phase: str = "Running") -> None:
        resources = {"limits": {"cpu": cpu, "memory": "1Gi"}, "requests": {"cpu": cpu, "memory": "1Gi"}}
        self.pods[(namespace, name)] = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": labels, "uid": f"uid-{name}",
                         "resourceVersion": "1"},
            "spec": {"containers": [{"name": container, "image": "docker.io/softwareradiosystems/srsran-project:"
                                     "24_10_1", "resources": resources,
                                     "resizePolicy": [{"resourceName": "cpu", "restartPolicy": "NotRequired"}]}],
                     "nodeName": "edge-1"},
            "status": {"phase": phase, "qosClass": "Guaranteed", "containerStatuses": [{
                "name": container, "ready": True, "restartCount": 0, "image": "srsran", "imageID": "sha256:0",
                "resources": copy.deepcopy(resources), "allocatedResources": dict(resources["requests"])}]},
        }

    def authorize(self, request: Request) -> None:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            raise HttpError(401, "Unauthorized")

    def error_body(self, error: HttpError) -> Any:
        reasons = {401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "AlreadyExists",
                   415: "UnsupportedMediaType", 422: "Invalid"}
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": error.message, "reason": reasons.get(error.status, "BadRequest"), "code": error.status}

    def _version(self, _request: Request) -> Response:
        return Response(200, {"major": "1", "minor": str(self.minor), "gitVersion": f"v1.{self.minor}.4",
                              "gitCommit": "0" * 40, "gitTreeState": "clean", "buildDate": "2024-04-16T00:00:00Z",
                              "goVersion": "go1.22.2", "compiler": "gc", "platform": "linux/amd64"})

    def _list(self, request: Request) -> Response:
        assert request.match is not None
        wanted = dict(term.split("=", 1) for term in request.query.get("labelSelector", [""])[0].split(",") if term)
        items = [self._kubelet(key) for key, pod in self.pods.items() if key[0] == request.match["ns"]
                 and all(pod["metadata"]["labels"].get(k) == v for k, v in wanted.items())]
        return Response(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"},
                              "items": items})

    def _read(self, request: Request) -> Response:
        return Response(200, self._kubelet(self._key(request)))

    def _patch_pod(self, request: Request) -> Response:
        if self.minor >= 33:
            raise HttpError(422, "Pod is invalid: spec: Forbidden: pod updates may not change fields other than "
                            "... (use the resize subresource to change container resources)")
        return self._resize(request)

    def _patch_resize(self, request: Request) -> Response:
        if self.minor < 33:
            raise HttpError(404, "the server could not find the requested resource")
        return self._resize(request)

    def _resize(self, request: Request) -> Response:
        key = self._key(request)
        if request.headers.get("content-type") not in PATCH_TYPES:
            raise HttpError(415, f"the body of the request was in an unknown format - accepted media types "
                            f"include: {', '.join(PATCH_TYPES)}")
        body = request.body
        if not isinstance(body, dict) or set(body) != {"spec"} or set(body["spec"]) != {"containers"}:
            raise HttpError(422, "Pod is invalid: spec: Forbidden: pod updates may not change fields other than "
                            "container resources")
        pod = copy.deepcopy(self.pods[key])
        containers = {c["name"]: c for c in pod["spec"]["containers"]}
        for change in body["spec"]["containers"]:
            if change.get("name") not in containers or set(change) - {"name", "resources"}:
                raise HttpError(422, f"Pod is invalid: spec.containers: Forbidden: cannot change {change}")
            resources = containers[change["name"]]["resources"]
            for kind in ("limits", "requests"):
                resources[kind].update(change.get("resources", {}).get(kind, {}))
            if resources["limits"] != resources["requests"]:
                raise HttpError(422, "Pod is invalid: metadata: Invalid value: \"Guaranteed\": Pod QoS is immutable")
        pod["metadata"]["resourceVersion"] = str(int(pod["metadata"]["resourceVersion"]) + 1)
        self.pods[key] = pod
        wanted = sum(millicores(c["resources"]["limits"]["cpu"]) for c in pod["spec"]["containers"])
        feasible = wanted <= self.allocatable_cpu
        pod["status"]["resize"] = "InProgress" if feasible else "Infeasible"
        self.pending[key] = feasible
        return Response(200, copy.deepcopy(pod))

    def _kubelet(self, key: tuple[str, str]) -> dict[str, Any]:
        """The pod as read now; an accepted resize is actuated (status follows spec) before the next read."""
        pod = self.pods[key]
        shown = copy.deepcopy(pod)
        if self.pending.pop(key, False):
            for status, container in zip(pod["status"]["containerStatuses"], pod["spec"]["containers"], strict=True):
                status["resources"] = copy.deepcopy(container["resources"])
                status["allocatedResources"] = dict(container["resources"]["requests"])
            pod["status"].pop("resize", None)
        return shown

    def _key(self, request: Request) -> tuple[str, str]:
        assert request.match is not None
        key = (request.match["ns"], request.match["name"])
        if key not in self.pods:
            raise HttpError(404, f"pods \"{key[1]}\" not found")
        return key

    def _create_deployment(self, request: Request) -> Response:
        assert request.match is not None
        body = request.body
        if not isinstance(body, dict) or body.get("kind") != "Deployment" or "name" not in body.get("metadata", {}):
            raise HttpError(422, "Deployment is invalid: metadata.name: Required value")
        key = (request.match["ns"], body["metadata"]["name"])
        if key in self.deployments:
            raise HttpError(409, f'deployments.apps "{key[1]}" already exists')
        self.deployments[key] = copy.deepcopy(body)
        return Response(201, body)

    def _replace_deployment(self, request: Request) -> Response:
        assert request.match is not None
        key = (request.match["ns"], request.match["name"])
        if key not in self.deployments:
            raise HttpError(404, f'deployments.apps "{key[1]}" not found')
        self.deployments[key] = copy.deepcopy(request.body)
        return Response(200, request.body)

    def _read_deployment(self, request: Request) -> Response:
        assert request.match is not None
        key = (request.match["ns"], request.match["name"])
        if key not in self.deployments:
            raise HttpError(404, f'deployments.apps "{key[1]}" not found')
        return Response(200, self.deployments[key])
