"""The table of external programs (controller/deploy/tools.py) against the set-up, the code and this machine.

A fresh machine passes `make test` only if `make setup` installs every program the code and the tests run:
the Makefile's APT_PACKAGES and pyproject.toml must install what the table names, and the table must name
every program the code runs (found by tests/program_scan.py, which reads the code and runs nothing).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from helpers import REPO, VENV_BIN
from program_scan import TASK_KEYWORDS, Invocation, ansible_programs, invoked_programs, python_programs

from controller.deploy.preflight import REQUIRED_TOOLS
from controller.deploy.tools import TESTBED_TOOLS, TOOLS, Source, apt_packages, by_name

SYSTEM_DIRS = ("/usr/sbin", "/sbin", "/usr/lib/openssh")
"""Where installed programs may be besides PATH: root's sbin directories and openssh's helpers (sftp-server)."""


def makefile_apt_packages(makefile: str) -> set[str]:
    """The words of the Makefile's ``APT_PACKAGES :=`` assignment (continuation lines joined)."""
    assignment = re.search(r"^APT_PACKAGES\s*:=((?:.*\\\n)*.*)$", makefile, re.M)
    assert assignment, "the Makefile has no APT_PACKAGES := line"
    return set(assignment.group(1).replace("\\\n", " ").split())


def setup_mismatch(makefile: str) -> dict[str, list[str]]:
    """Debian packages the table needs that the Makefile does not install, and ones it installs for nothing."""
    listed, needed = makefile_apt_packages(makefile), apt_packages()
    return {"missing from APT_PACKAGES": sorted(needed - listed), "not in the table": sorted(listed - needed)}


def pip_distributions(pyproject: dict) -> set[str]:
    """The project and every distribution it depends on (main and dev), names normalised."""
    project = pyproject["project"]
    requirements = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    names = {re.match(r"[A-Za-z0-9._-]+", requirement).group(0) for requirement in requirements}
    return {re.sub(r"[-_.]+", "-", name).lower() for name in [*names, project["name"]]}


def test_the_makefile_installs_exactly_the_tables_debian_packages() -> None:
    mismatch = setup_mismatch((REPO / "Makefile").read_text(encoding="utf-8"))
    assert mismatch == {"missing from APT_PACKAGES": [], "not in the table": []}


def test_the_makefile_check_fails_when_a_package_is_dropped_or_unexplained() -> None:
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    broken = re.sub(r"\biperf3\b", "cowsay", makefile, count=1)
    assert setup_mismatch(broken) == {"missing from APT_PACKAGES": ["iperf3"], "not in the table": ["cowsay"]}


def test_pyproject_installs_every_pip_row() -> None:
    installed = pip_distributions(tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8")))
    missing = [f"{tool.name} ({tool.package})" for tool in TOOLS
               if tool.source is Source.PIP and tool.package.lower() not in installed]
    assert missing == []


def test_base_rows_come_with_every_debian_system() -> None:
    """Essential or Priority required: present on every Debian 12, even a minimal container image."""
    packages = sorted({tool.package for tool in TOOLS if tool.source is Source.BASE})
    done = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${Priority} ${Essential}\n", *packages],
                          capture_output=True, text=True, check=False)
    status = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines()}
    assert {p: status.get(p) for p in packages if not status.get(p) or not {"required", "yes"} & set(status[p])} == {}


def test_lab_rows_are_installed_by_their_role() -> None:
    for tool in TOOLS:
        if tool.source is Source.LAB and tool.installed_by:
            tasks = (REPO / "playbooks" / "roles" / tool.installed_by / "tasks").glob("*.yml")
            assert any(re.search(rf"\b{re.escape(tool.package)}\b", path.read_text()) for path in tasks), tool


@pytest.fixture(scope="module")
def found() -> list[Invocation]:
    """Every program the repository runs (read once per module: the scan parses every file)."""
    return invoked_programs(REPO)


def test_the_makefile_builds_every_build_row_from_its_source() -> None:
    rules = (REPO / "Makefile").read_text(encoding="utf-8")
    built = [tool for tool in TOOLS if tool.source is Source.BUILD]
    assert built and all(f"\nbuild/{tool.name}: {tool.package} " in rules and (REPO / tool.package).is_file()
                         for tool in built), "each BUILD row needs a `build/NAME: SOURCE` rule in the Makefile"
    assert all(f"build/{tool.name}" in rules.split("\nsetup:", 1)[1].split("\n", 1)[0] for tool in built)


def test_every_program_the_code_runs_is_in_the_table(found: list[Invocation]) -> None:
    unknown = sorted({f"{i.program or '?'}: {i.where}" for i in found if i.program not in by_name()})
    assert unknown == [], "add each to controller/deploy/tools.py (and its package to the set-up)"


def test_every_row_of_the_table_is_run_by_something(found: list[Invocation]) -> None:
    programs = {invocation.program for invocation in found}
    assert sorted(set(by_name()) - programs) == []


def test_preflight_requires_every_testbed_row_by_its_debian_package() -> None:
    assert REQUIRED_TOOLS == TESTBED_TOOLS
    assert {"ip", "tc", "iptables", "ovs-vswitchd", "prometheus", "iperf3"} <= set(REQUIRED_TOOLS)
    assert all(by_name()[name].source is Source.APT for name in REQUIRED_TOOLS)


def test_make_setup_installed_every_program_this_machine_runs() -> None:
    """The fresh-machine check: after `make setup`, every non-lab program of the table is here."""
    path = os.pathsep.join([str(VENV_BIN), str(REPO / "build"), os.environ.get("PATH", ""), *SYSTEM_DIRS])
    absent = [f"{tool.name} ({tool.source.name.lower()} {tool.package})" for tool in TOOLS
              if tool.source is not Source.LAB and shutil.which(tool.name, path=path) is None]
    assert absent == [], "run `make setup` (it installs these)"


# ---- the scanner finds what it should, so that the checks above can fail ----

SAMPLE_PYTHON = '''
import shutil, subprocess
VSCTL = ["ovs-vsctl", "--timeout=5"]

def sh(*argv):
    return subprocess.run(argv, check=True)

def probe(runner, netns):
    runner.output([*VSCTL, "show"])
    subprocess.Popen(["ip", "netns", "exec", netns, "frobnicate", "-x"])
    subprocess.run(["env", "A=1", "quux"])
    sh("gizmo", "--help")
    for command in (["widget", "a"], ["doohickey"]):
        subprocess.run(command)
    shutil.which("thingamajig")
    print(" ".join(["not-a-program", "x"]), ["time", "value"])
'''

SAMPLE_TASKS = '''
- name: A command
  ansible.builtin.command: newtool --flag {{ x }}
- name: A script
  ansible.builtin.shell: |
    set -e
    first | second && read -r a < f && {{ var }} x
    {% for item in items %}
    if probe -x {{ item }}; then fixer; fi
    {% endfor %}
    case "$(lister 2>/dev/null)" in *"x"*) cleaner ;; esac
- name: A block
  block:
    - name: A daemon
      pidfile_daemon:
        pidfile: /run/x.pid
        argv: ["{{ sample_binary }}", --port, "1"]
- name: A module that runs a program
  community.general.modprobe:
    name: veth
- name: A module nobody classified
  acme.widgets.frobnicate:
    x: 1
'''


def test_the_scanner_finds_argv_programs_in_python(tmp_path: Path) -> None:
    (tmp_path / "sample.py").write_text(SAMPLE_PYTHON, encoding="utf-8")
    found = {invocation.program for invocation in python_programs(tmp_path / "sample.py", tmp_path)}
    assert found == {"ovs-vsctl", "ip", "frobnicate", "env", "quux", "gizmo", "widget", "doohickey", "thingamajig"}


def test_the_scanner_finds_programs_in_tasks_and_flags_unknown_modules(tmp_path: Path) -> None:
    (tmp_path / "main.yml").write_text(SAMPLE_TASKS, encoding="utf-8")
    found = list(ansible_programs(tmp_path / "main.yml", tmp_path, {"sample_binary": "/opt/sample/sampled"}))
    assert sorted(i.program for i in found if i.program) == [
        "cleaner", "first", "fixer", "lister", "modprobe", "newtool", "probe", "sampled", "second", "sh"]
    unclassified = [i.where for i in found if not i.program]
    assert len(unclassified) == 2  # the unresolvable {{ var }} command and the unknown module
    assert any("module 'acme.widgets.frobnicate' is not classified" in where for where in unclassified)
    assert any("A script: cannot tell which program" in where for where in unclassified)


@pytest.mark.parametrize("program", ["iperf3", "kubectl", "modinfo", "systemd-analyze", "ovs-ofctl", "sshd"])
def test_the_scanner_sees_the_programs_the_issue_found_missing(found: list[Invocation], program: str) -> None:
    assert program in {invocation.program for invocation in found}


def test_the_scan_leaves_the_test_process_unpatched() -> None:
    """Importing ansible in-process replaces sys.intern, and torch.compile (the slice model) then fails."""
    assert {"name", "when", "loop", "block", "local_action"} <= TASK_KEYWORDS
    assert type(sys.intern).__name__ == "builtin_function_or_method"
