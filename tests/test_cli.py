"""The command line's lazy command groups: each group loads on its own, and only the one named is imported."""

from __future__ import annotations

import subprocess
import sys

import pytest

from controller.cli import COMMAND_GROUPS, command_group, main


@pytest.mark.parametrize("group", sorted(COMMAND_GROUPS))
def test_every_group_registers_and_prints_help(group: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main([group, "--help"])
    assert done.value.code == 0
    assert f"usage: slicebed {group}" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "group"), [
    (["campaign", "run", "x.yaml"], "campaign"),
    (["--runs-dir", "model", "optimize", "--help"], "optimize"),
    (["--quiet", "runs", "list"], "runs"),
    (["--version"], None),
    (["nonsense"], None),
])
def test_command_group_skips_global_options_and_their_values(argv: list[str], group: str | None) -> None:
    assert command_group(argv) == group


def test_version_imports_no_command_module() -> None:
    code = ("import sys; from controller.cli import main\n"
            "try:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('controller.cli.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "['controller.cli.common']"
