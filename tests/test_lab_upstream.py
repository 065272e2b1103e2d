"""The lab manifests against what their upstream projects document (offline: the files, no cluster).

Each check names the upstream file and tag it follows; the manifests' own comments and docs/lab-guide.md cite
the same sources.
"""

from __future__ import annotations

import configparser
import hashlib
import json
import shlex
import subprocess
from pathlib import Path

import yaml
from helpers import REPO, venv_environment

MANIFESTS = REPO / "manifests"

UNDERLAY_MTU = 1450
"""The smallest underlay the lab guide supports: an OpenStack tenant (VXLAN) network's MTU."""
VXLAN_OVERHEAD = 20 + 8 + 8 + 14
"""Outer IPv4 + UDP + VXLAN header + the inner Ethernet header: what the OvS VXLAN ports add on the underlay."""
GTPU_OVERHEAD = 20 + 8 + 8 + 8
"""Outer IPv4 + UDP + GTP-U header (8) + its optional fields and the PDU session container (8, TS 29.281 and
TS 38.415; Open5GS's UPF sends the QFI in it): what N3 adds to a UE packet."""


def documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def n3_network() -> dict:
    (attachment,) = documents(MANIFESTS / "open5gs" / "core" / "network.yaml")
    return json.loads(attachment["spec"]["config"])


def test_n3_attachment_takes_the_pods_static_addresses_and_fits_the_underlay() -> None:
    """Multus passes a pod's requested ``ips`` to static IPAM as runtime config only to a plugin that declares the
    ``ips`` capability (multus-cni v4.1.3 examples/macvlan-pod.yml; the CNI_ARGS fallback is deprecated since 3.5);
    ovs-cni takes ``mtu`` (ovs-cni v0.34.2 docs/cni-plugin.md)."""
    config = n3_network()
    assert config["type"] == "ovs" and config["ipam"] == {"type": "static"}
    assert config.get("capabilities") == {"ips": True}
    assert config.get("mtu") == UNDERLAY_MTU - VXLAN_OVERHEAD == 1400


def test_ue_mtu_fits_inside_n3() -> None:
    """The MTU each SMF announces to its UEs leaves room for the GTP-U encapsulation on the N3 interface."""
    ue_mtu_limit = n3_network()["mtu"] - GTPU_OVERHEAD
    smf_configs = sorted((MANIFESTS / "open5gs" / "overlays").glob("*/smf.yaml"))
    assert smf_configs
    for path in smf_configs:
        mtu = yaml.safe_load(path.read_text())["smf"]["mtu"]
        assert mtu <= ue_mtu_limit, f"{path}: smf.mtu {mtu} > N3 MTU - GTP-U overhead = {ue_mtu_limit}"


def ran_container(path: Path) -> dict:
    """The RAN program's container of the Deployment in ``path`` (not slicebed's UE sink beside it)."""
    (deployment,) = [doc for doc in documents(path) if doc["kind"] == "Deployment"]
    (container,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] != "sink"]
    return container


def softmodem_arguments(path: Path, program: str) -> list[str]:
    """The arguments the container's shell command passes to ``program``."""
    words = shlex.split(ran_container(path)["command"][-1])
    start = next(index for index, word in enumerate(words) if word.endswith(f"/{program}"))
    return words[start + 1:]


def test_oai_gnb_and_nrue_sample_alike_in_rfsim() -> None:
    """In rfsim gNB and UE must use the same sampling rate: both without ``-E`` (three-quarter sampling), as
    openairinterface5g's doc/NR_SA_Tutorial_OAI_nrUE.md ("RFsimulator", tag 2024.w12) runs them."""
    gnb = softmodem_arguments(MANIFESTS / "oai" / "base" / "gnb.yaml", "nr-softmodem")
    ue = softmodem_arguments(MANIFESTS / "oai" / "base" / "nrue.yaml", "nr-uesoftmodem")
    for arguments in (gnb, ue):
        assert "--rfsim" in arguments and "--sa" in arguments, arguments
        assert "-E" not in arguments, arguments


SRSRAN = MANIFESTS / "srsran"


def key_list(path: Path) -> tuple[set[str], dict[str, str]]:
    """A stored key list: its keys and its ``# key: value`` header (source, tag, image)."""
    keys, header = set(), {}
    for line in path.read_text().splitlines():
        if line.startswith("# ") and ": " in line:
            name, value = line[2:].split(": ", 1)
            header[name] = value
        elif line and not line.startswith("#"):
            keys.add(line)
    return keys, header


def dotted(value: object, prefix: str = "") -> set[str]:
    """The dotted keys of a YAML document (list items as ``key[].sub``)."""
    if isinstance(value, dict):
        return set().union(*(dotted(child, f"{prefix}{key}.") for key, child in value.items())) if value else set()
    if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        return set().union(*(dotted(item, f"{prefix[:-1]}[].") for item in value))
    return {prefix[:-1]}


def image_tag(path: Path) -> str:
    return ran_container(path)["image"].rsplit(":", 1)[1]


def test_every_srsran_gnb_key_is_in_the_pinned_releases_schema() -> None:
    """srsRAN Project rejects unknown keys: each overlay's gnb.yml and the base's command-line options must be keys
    of the release the image runs (apps/gnb/gnb_appconfig_cli11_schema.cpp at that tag, stored with its source)."""
    keys, header = key_list(SRSRAN / "schema" / "gnb.keys")
    assert header["source"] == "srsran/srsRAN_Project apps/gnb/gnb_appconfig_cli11_schema.cpp"
    assert header["tag"] == f"release_{image_tag(SRSRAN / 'base' / 'gnb.yaml')}"
    assert {"amf.n3_bind_addr", "slicing[].sst", "cell_cfg.dl_arfcn"} <= keys and "cu_up.upf.bind_addr" not in keys
    (deployment,) = [doc for doc in documents(SRSRAN / "base" / "gnb.yaml") if doc["kind"] == "Deployment"]
    words = shlex.split(deployment["spec"]["template"]["spec"]["containers"][0]["command"][-1])
    command_line = {f"amf.{word[2:]}" for word in words[words.index("amf") + 1:] if word.startswith("--")}
    assert command_line == {"amf.addr", "amf.bind_addr"}
    configs = sorted((SRSRAN / "overlays").glob("*/gnb.yml"))
    assert configs
    for path in configs:
        written = dotted(yaml.safe_load(path.read_text())) | command_line
        assert written - keys == set(), f"{path}: keys {header['tag']} does not know"


def test_every_srsue_key_is_in_the_pinned_releases_options() -> None:
    """The same for srsUE's ue.conf (INI sections and keys) against srsRAN_4G's srsue/src/main.cc options."""
    keys, header = key_list(SRSRAN / "schema" / "srsue.keys")
    assert header["source"] == "srsran/srsRAN_4G srsue/src/main.cc"
    assert header["tag"] == f"release_{image_tag(SRSRAN / 'base' / 'ue.yaml')}"
    configs = sorted((SRSRAN / "overlays").glob("*/ue.conf"))
    assert configs
    for path in configs:
        parser = configparser.ConfigParser(interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys as written
        parser.read_string(path.read_text())
        written = {f"{section}.{key}" for section in parser.sections() for key in parser[section]}
        assert written and written - keys == set(), f"{path}: keys {header['tag']} does not know"


ADDONS = MANIFESTS / "addons"


def test_cluster_addons_are_vendored_verbatim_with_source_version_and_license() -> None:
    """flannel, Multus and OvS CNI come from this repository, not from the network at deploy time: each file is
    upstream's at the tag SOURCE names (its sha256), with the upstream LICENSE; OvS CNI is the manifest its install
    guide applies, examples/ovs-cni.yml (manifests/ovs-cni.yml.in is an unrendered template)."""
    defaults = yaml.safe_load((REPO / "playbooks" / "roles" / "kubernetes" / "defaults" / "main.yml").read_text())
    wanted = defaults["kubernetes_addon_manifests"]
    assert list(wanted) == ["flannel", "multus", "ovs-cni"]
    for name, directory in wanted.items():
        assert directory == f"{{{{ role_path }}}}/../../../manifests/addons/{name}", directory
        source = yaml.safe_load((ADDONS / name / "SOURCE").read_text())
        (vendored,) = yaml.safe_load((ADDONS / name / "kustomization.yaml").read_text())["resources"]
        assert hashlib.sha256((ADDONS / name / vendored).read_bytes()).hexdigest() == source["sha256"]
        assert Path(source["path"]).name == vendored
        assert (ADDONS / name / "VERSION").read_text().strip() == source["tag"]
        assert "Apache License" in (ADDONS / name / "LICENSE").read_text()
    assert yaml.safe_load((ADDONS / "ovs-cni" / "SOURCE").read_text())["path"] == "examples/ovs-cni.yml"


def test_cluster_addon_images_are_pinned_to_their_release() -> None:
    """Upstream's files run moving tags (ovs-cni :latest, Multus :snapshot-thick); the kustomizations pin them."""
    images = set()
    for name in ("flannel", "multus", "ovs-cni"):
        done = subprocess.run(["kubectl", "kustomize", str(ADDONS / name)], capture_output=True, text=True,
                              env=venv_environment(), check=True, timeout=120)
        for doc in yaml.safe_load_all(done.stdout):
            if doc and doc["kind"] == "DaemonSet":
                spec = doc["spec"]["template"]["spec"]
                images |= {c["image"] for c in spec["containers"] + spec.get("initContainers", [])}
    assert images == {"docker.io/flannel/flannel-cni-plugin:v1.5.1-flannel2", "docker.io/flannel/flannel:v0.25.7",
                      "ghcr.io/k8snetworkplumbingwg/multus-cni:v4.1.3-thick",
                      "ghcr.io/k8snetworkplumbingwg/ovs-cni-plugin:v0.34.2"}
