"""Find the external programs that Python code and Ansible tasks run, without running anything.

Python (by its syntax tree): argv lists passed to subprocess, command runners and the like (``run``, ``Popen``,
``output``, ...), through a variable or a helper that forwards its arguments to one; ``ip netns exec NS PROG`` and
``env VAR=value PROG`` count PROG too; ``shutil.which("prog")``; ``<venv bin> / "prog"`` paths; absolute paths of
programs (``/usr/sbin/sshd``). Ansible (by its YAML): ``command``/``shell`` tasks (every simple command of a
shell script), ``pidfile_daemon`` argv, and modules known to run a program (:data:`MODULE_PROGRAMS`). A module
that is neither there nor in :data:`MODULES_WITHOUT_PROGRAMS` is reported, so that a new one gets classified.
The Python interpreter itself (``sys.executable``, ``ansible_playbook_python``) is not an external program.
"""

from __future__ import annotations

import ast
import re
import shlex
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from core.commands import LocalRunner

INVOKERS = {"run", "Popen", "output", "check_output", "check_call", "call", "run_command", "_exec", "_in_netns",
            "change", "join"}
"""Functions and methods whose positional arguments are argv lists (``join``: ``shlex.join`` of an argv)."""
WHICH = {"which", "require"}
"""Functions that look a program up by name (``shutil.which``, verify-lab's ``require``)."""
PROGRAM_PATH = re.compile(r"^/(?:usr/)?(?:s?bin|lib/openssh)/([\w.+-]+)$")
PYTHON = re.compile(r"^python[0-9.]*$")

MODULE_PROGRAMS = {
    "community.general.ip_netns": "ip",
    "community.general.modprobe": "modprobe",
    "ansible.posix.sysctl": "sysctl",
    "ansible.builtin.service": "systemctl",
    "ansible.builtin.systemd_service": "systemctl",
    "ansible.builtin.service_facts": "systemctl",
    "ansible.builtin.apt": "apt-get",
    "ansible.builtin.apt_repository": "apt-get",  # installs python3-apt with apt-get where it is missing
    "ansible.builtin.dpkg_selections": "dpkg",
    "ansible.builtin.package_facts": "dpkg-query",
    "ansible.builtin.user": "useradd",
    "ansible.builtin.unarchive": "tar",
}
"""Modules that run a program on their host."""
MODULES_WITHOUT_PROGRAMS = {
    "ansible.builtin.assert", "ansible.builtin.copy", "ansible.builtin.lineinfile", "community.general.ini_file",
    "ansible.builtin.debug", "ansible.builtin.deb822_repository", "ansible.builtin.fail", "ansible.builtin.file",
    "ansible.builtin.slurp",
    "ansible.builtin.find", "ansible.builtin.get_url", "ansible.builtin.import_role", "ansible.builtin.import_tasks",
    "ansible.builtin.include_role", "ansible.builtin.include_tasks", "ansible.builtin.meta",
    "ansible.builtin.replace", "ansible.builtin.set_fact", "ansible.builtin.setup", "ansible.builtin.stat",
    "ansible.builtin.template", "ansible.builtin.uri", "ansible.builtin.validate_argument_spec",
    "kubernetes.core.k8s", "kubernetes.core.k8s_exec", "kubernetes.core.k8s_info",  # Python client (k8s_exec: in a pod)
    "netns_topology",  # slicebed's own module: its Python source is scanned
    "ansible.builtin.wait_for",  # a socket in Python
    "ansible.builtin.pip",  # the virtualenv's pip: Python (the lab_traffic role installs python3-venv before it)
}
"""Modules that run no program on their host (file, template and API modules)."""
LOOKUP_PROGRAMS = {"kubernetes.core.kustomize": "kubectl"}
"""Lookup plugins that run a program on the machine running Ansible."""
SHELL_KEYWORDS = {"!", "if", "then", "else", "elif", "fi", "case", "esac", "in", "for", "while", "until", "do",
                  "done"}
"""Shell keywords: the command follows them."""
SHELL_BUILTINS = {"set", "read", "kill", "echo", "cd", "exit", "test", "[", "true", "false", "export", "trap", "wait",
                  "printf", "return", "local", ":"}
"""Shell builtins: not programs."""


def ansible_task_keywords() -> set[str]:
    """Ansible's task and block keywords, read in a child process: importing ansible replaces ``sys.intern``
    with a patch object, which breaks ``torch.compile`` for every later test in the same process."""
    script = ("from ansible.playbook.block import Block; from ansible.playbook.task import Task; "
              "print(*sorted(set(Task.fattributes) | set(Block.fattributes)))")
    return set(LocalRunner().output([sys.executable, "-c", script], timeout_s=120).split()) | {"local_action"}


TASK_KEYWORDS = ansible_task_keywords()


@dataclass(frozen=True)
class Invocation:
    """A program found in a file (``program`` is empty when the file runs something the scan cannot name)."""

    program: str
    where: str


def python_programs(path: Path, root: Path) -> Iterator[Invocation]:
    """The programs one Python file runs."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    where = str(path.relative_to(root))
    assigned = _assignments(tree)
    forwarders = _forwarders(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _name(node.func)
            if _invokes(node):
                for argument in node.args:
                    yield from (Invocation(p, where) for p in _argv_programs(argument, assigned))
            elif name in WHICH and node.args and _text(node.args[0]):
                yield Invocation(_text(node.args[0]), where)
            elif name in forwarders and len(node.args) > forwarders[name] and _text(node.args[forwarders[name]]):
                yield Invocation(_text(node.args[forwarders[name]]), where)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and _text(node.right):
            left = ast.unparse(node.left)
            if "sys.executable" in left or "BIN" in left:
                yield Invocation(_text(node.right), where)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and PROGRAM_PATH.match(node.value):
            yield Invocation(PROGRAM_PATH.match(node.value).group(1), where)


def _invokes(call: ast.Call) -> bool:
    """Whether a call takes argv lists (``join`` only as ``shlex.join``)."""
    name = _name(call.func)
    return name in INVOKERS and (name != "join" or ast.unparse(call.func) == "shlex.join")


def _text(node: ast.expr) -> str:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else ""


def _name(node: ast.expr) -> str:
    """The name of a variable, or the attribute name of ``a.b`` (the function of a call, the target of a value)."""
    if isinstance(node, ast.Name):
        return node.id
    return node.attr if isinstance(node, ast.Attribute) else ""


def _assignments(tree: ast.AST) -> dict[str, list[ast.expr]]:
    """Name (or attribute name) -> every value assigned to it, loop variables over literal sequences included."""
    found: dict[str, list[ast.expr]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                found.setdefault(_name(target), []).append(node.value)
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            found.setdefault(_name(node.target), []).append(node.value)
        elif isinstance(node, ast.For) and isinstance(node.iter, ast.List | ast.Tuple):
            found.setdefault(_name(node.target), []).extend(node.iter.elts)
    found.pop("", None)
    return found


def _forwarders(tree: ast.AST) -> dict[str, int]:
    """Functions that pass one of their parameters on as an argv (name -> that parameter's position)."""
    found = {}
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef):
            continue
        positional = [a.arg for a in function.args.args if a.arg not in ("self", "cls")]
        if function.args.vararg:
            positional.append(function.args.vararg.arg)
        for node in ast.walk(function):
            if isinstance(node, ast.Call) and _invokes(node) and node.args:
                first = node.args[0]
                if isinstance(first, ast.List) and first.elts and isinstance(first.elts[0], ast.Starred):
                    first = first.elts[0].value
                if isinstance(first, ast.Name) and first.id in positional:
                    found[function.name] = positional.index(first.id)
    return found


def _argv_programs(node: ast.expr, assigned: dict[str, list[ast.expr]], depth: int = 0) -> Iterator[str]:
    """The programs an argv expression starts (a list literal, a variable holding one, or either of an if-else)."""
    if depth > 3:
        return
    if isinstance(node, ast.IfExp):
        yield from _argv_programs(node.body, assigned, depth + 1)
        yield from _argv_programs(node.orelse, assigned, depth + 1)
    elif isinstance(node, ast.Name | ast.Attribute):
        for value in assigned.get(_name(node), []):
            yield from _argv_programs(value, assigned, depth + 1)
    elif isinstance(node, ast.List | ast.Tuple) and node.elts:
        first = node.elts[0]
        if isinstance(first, ast.Starred):
            yield from _argv_programs(first.value, assigned, depth + 1)
        words = [_text(element) for element in node.elts]
        if words[0]:
            yield from argv_programs(words)


def argv_programs(argv: list[str]) -> Iterator[str]:
    """The program of an argv (words not known statically are empty), and the one a wrapper in it runs."""
    program = argv[0]
    yield program
    if program == "ip" and argv[1:3] == ["netns", "exec"] and len(argv) > 4 and argv[4]:
        yield from argv_programs(argv[4:])
    elif program == "env":
        rest = [word for word in argv[1:] if not word or "=" not in word]
        if rest and rest[0]:
            yield from argv_programs(rest)


# ---- Ansible ----

def task_lists(document: object) -> Iterator[list]:
    """The task lists of a playbook (plays' tasks and handlers) or of a role's tasks/handlers file."""
    if not isinstance(document, list):
        return
    if document and isinstance(document[0], dict) and ("hosts" in document[0] or "import_playbook" in document[0]):
        for play in document:
            for key in ("pre_tasks", "tasks", "post_tasks", "handlers"):
                yield play.get(key) or []
    else:
        yield document


def tasks(task_list: list) -> Iterator[dict]:
    """Every task of a list, blocks opened."""
    for task in task_list:
        if not isinstance(task, dict):
            continue
        if "block" in task:
            for key in ("block", "rescue", "always"):
                yield from tasks(task.get(key) or [])
        else:
            yield task


def task_module(task: dict) -> tuple[str, object]:
    """The module a task calls and its arguments."""
    for key, value in task.items():
        if key not in TASK_KEYWORDS and not key.startswith("with_"):
            return key, value
    return "", None


def ansible_programs(path: Path, root: Path, variables: dict[str, object]) -> Iterator[Invocation]:
    """The programs the tasks of one playbook or role task file run (``variables``: the roles' defaults)."""
    where = str(path.relative_to(root))
    text = path.read_text(encoding="utf-8")
    for lookup, program in LOOKUP_PROGRAMS.items():
        if lookup in text:
            yield Invocation(program, where)
    for task_list in task_lists(yaml.safe_load(text)):
        for task in tasks(task_list):
            module, arguments = task_module(task)
            short = module.removeprefix("ansible.builtin.")
            label = f"{where}: {task.get('name', module)}"
            if short in ("command", "shell"):
                args = arguments if isinstance(arguments, dict) else {"cmd": arguments}
                if args.get("argv"):
                    yield from _resolved(str(args["argv"][0]), variables, label)
                elif short == "command":
                    yield from _resolved(shlex.split(_without_jinja(str(args.get("cmd"))))[0], variables, label)
                else:
                    for program in shell_programs(str(args.get("cmd"))):
                        yield Invocation(program, label if program else f"{label}: cannot tell which program a "
                                                                         "shell command that starts with Jinja runs")
                    yield from _resolved((task.get("args") or {}).get("executable", "sh"), variables, label)
            elif module == "pidfile_daemon":
                argv = arguments.get("argv")
                if argv:
                    yield from _resolved(argv[0] if isinstance(argv, list) else argv, variables, label)
                if arguments.get("netns"):
                    yield Invocation("ip", label)
            elif module in MODULE_PROGRAMS:
                yield Invocation(MODULE_PROGRAMS[module], label)
            elif module not in MODULES_WITHOUT_PROGRAMS:
                yield Invocation("", f"{label}: module {module!r} is not classified (tests/program_scan.py)")


def _without_jinja(text: str) -> str:
    """``text`` with Jinja statements removed and each expression replaced by the word JINJA."""
    return re.sub(r"\{\{.*?\}\}", "JINJA", re.sub(r"\{%.*?%\}", "", text, flags=re.S), flags=re.S)


def shell_programs(script: str) -> Iterator[str]:
    """The first word of every simple command of a shell script, command substitutions included (keywords,
    builtins, assignments, redirections and case patterns skipped; empty for a command that starts with Jinja)."""
    flat = _without_jinja(script).replace("\\\n", " ")
    for segment in re.split(r"\n|;|&&|\|\||\||\$\(|`|\{|\}|\(|\)", flat):
        words = [word for word in segment.split() if not re.match(r"^\w+=", word)]
        while words and words[0] in SHELL_KEYWORDS:
            words.pop(0)
        if words and words[0] not in SHELL_BUILTINS and not re.match(r"^(\d*[<>&]|[*\"'$])", words[0]):
            yield "" if words[0] == "JINJA" else words[0]


def _resolved(word: str, variables: dict[str, object], label: str, depth: int = 0) -> Iterator[Invocation]:
    """The program a word names: itself, what the variable of its Jinja expression holds, or the last component of a
    path below a Jinja expression (``{{ playbook_dir }}/../build/prog``)."""
    if re.fullmatch(r"\{\{[^}]*\}\}/\S+", word.strip()):
        yield Invocation(Path(word.strip()).name, label)
        return
    expression = re.match(r"^\{\{\s*\[?\s*([A-Za-z_]\w*)", word.strip())
    if expression is None:
        if not PYTHON.match(Path(word).name):
            yield Invocation(Path(word).name, label)
        return
    name = expression.group(1)
    if "python" in name:
        return
    value = variables.get(name)
    if isinstance(value, str) and depth < 3:
        yield from _resolved(value, variables, label, depth + 1)
    else:
        yield Invocation("", f"{label}: cannot tell which program {word!r} runs")


def role_defaults(roles: Path) -> dict[str, object]:
    """Every role's defaults, merged (role variables carry the role's name as prefix, so they do not collide)."""
    merged: dict[str, object] = {}
    for defaults in sorted(roles.glob("*/defaults/main.yml")):
        merged.update(yaml.safe_load(defaults.read_text(encoding="utf-8")) or {})
    return merged


def python_files(root: Path, folders: Iterable[str]) -> list[Path]:
    """The Python files under ``folders`` of ``root``, and the extension-less Python scripts in .ci/."""
    files = [path for folder in folders for path in sorted((root / folder).rglob("*.py"))]
    scripts = [path for path in sorted((root / ".ci").glob("*")) if path.is_file() and not path.suffix]
    return files + [path for path in scripts if path.read_text(encoding="utf-8").startswith("#!/usr/bin/env python")]


def makefile_programs(path: Path, root: Path) -> Iterator[Invocation]:
    """The virtualenv programs a Makefile's recipes run (``$(BIN)/name``)."""
    for name in sorted(set(re.findall(r"\$\(BIN\)/([\w.+-]+)", path.read_text(encoding="utf-8")))):
        if name != "pip":
            yield Invocation(name, str(path.relative_to(root)))


def invoked_programs(root: Path) -> list[Invocation]:
    """Every program the repository's Python code, Ansible tasks and Makefile recipes run."""
    found = list(makefile_programs(root / "Makefile", root))
    for path in python_files(root, ("core", "collectors", "analysis", "controller", "dataplane", "tests",
                                    "benchmarks", "playbooks")):
        found += python_programs(path, root)
    variables = role_defaults(root / "playbooks" / "roles")
    for path in sorted((root / "playbooks").rglob("*.yml")):
        if "tasks" in path.parts or "handlers" in path.parts or path.parent == root / "playbooks":
            found += ansible_programs(path, root, variables)
    return [i for i in found if not PYTHON.match(i.program)]
