#!/usr/bin/python
"""Ansible module pidfile_daemon: start a program in the background with a PID file, or stop it by that PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: pidfile_daemon
short_description: Keep one background process per PID file running (or stopped)
description:
  - C(state=started) starts I(argv) detached (new session, output to I(log)) unless the process recorded in
    I(pidfile) is alive and runs the same program; then waits until I(wait_for_port) accepts connections.
  - C(state=stopped) sends SIGTERM to the recorded PID (SIGKILL after I(stop_timeout) seconds), removes the file.
  - Runs where the task runs, so under the netns connection the process starts inside the node's namespace.
options:
  pidfile: {description: PID file path (or use I(pidfiles) or I(pid_dir)), type: path}
  pidfiles: {description: "With C(state=stopped): stop the processes of these PID files at once", type: list,
             elements: path}
  pid_dir: {description: "With C(state=stopped): stop the processes of every *.pid file in this directory at once",
            type: path}
  argv: {description: Program and arguments, type: list, elements: str}
  log: {description: File that receives stdout and stderr, type: path}
  env: {description: Extra environment variables, type: dict, default: {}}
  netns: {description: Run the program inside this network namespace (C(ip netns exec)), type: str}
  state: {description: started or stopped, type: str, choices: [started, stopped], default: started}
  wait_for_port: {description: TCP port (host I(wait_for_host)) that must accept connections after a start, type: int}
  wait_for_host: {description: Host of I(wait_for_port), type: str, default: 127.0.0.1}
  wait_for_path: {description: Path (e.g. a unix socket) that must exist after a start, type: path}
  start_timeout: {description: Seconds to wait for the port, or for the process to stay up, type: float, default: 10}
  stop_timeout: {description: Seconds between SIGTERM and SIGKILL, type: float, default: 5}
"""

EXAMPLES = r"""
- name: Run Prometheus
  pidfile_daemon:
    pidfile: /run/slicebed/sb/pids/prometheus.pid
    argv: [prometheus, --config.file=/run/slicebed/sb/prometheus/prometheus.yml]
    log: /run/slicebed/sb/logs/prometheus.log
    wait_for_port: 9090
"""

RETURN = r"""
pid: {description: PID of the process started (or already running), type: int, returned: state=started}
stopped: {description: PIDs that were running and were stopped, type: list, returned: state=stopped}
killed: {description: PIDs that needed SIGKILL, type: list, returned: state=stopped}
"""


def recorded_pid(pidfile: str) -> int | None:
    """The PID in ``pidfile``, or None when the file is missing or malformed."""
    try:
        with open(pidfile, encoding="ascii") as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def runs_program(pid: int, program: str | None) -> bool:
    """Whether ``pid`` is alive (not a zombie) and, when ``program`` is given, executes it."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            if handle.read().rsplit(")", 1)[1].split()[0] == "Z":
                return False
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            argv = handle.read().split(b"\0")
    except (OSError, IndexError):
        return False
    if program is None:
        return True
    name = os.path.basename(program).encode()
    return any(os.path.basename(arg) == name for arg in argv[:2])


def started_before(pid: int, pidfile: str) -> bool:
    """Whether ``pid`` started no later than ``pidfile`` was written: a PID reused by a later process is not ours."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            start_ticks = int(handle.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat", encoding="ascii") as handle:
            boot = next(int(line.split()[1]) for line in handle if line.startswith("btime "))
        written = os.stat(pidfile).st_mtime
    except (OSError, IndexError, ValueError, StopIteration):
        return False
    return boot + start_ticks / os.sysconf("SC_CLK_TCK") <= written + 1.0


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def ready(host: str, port: int | None, path: str | None) -> bool:
    """Whether the awaited port accepts connections and the awaited path exists (False when nothing is awaited)."""
    if port is None and path is None:
        return False
    return (port is None or port_open(host, port)) and (path is None or os.path.exists(path))


def log_tail(path: str | None) -> str:
    if not path:
        return ""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            lines = [line.strip() for line in handle.read().splitlines() if line.strip()]
    except OSError:
        return ""
    return f"; last log line: {lines[-1]}" if lines else ""


def start(module: AnsibleModule) -> None:
    params = module.params
    argv, pidfile = params["argv"], params["pidfile"]
    if not argv:
        module.fail_json(msg="pidfile_daemon: argv is required with state=started")
    pid = recorded_pid(pidfile)
    if pid is not None and runs_program(pid, argv[0]):
        module.exit_json(changed=False, pid=pid)
    if module.check_mode:
        module.exit_json(changed=True)
    if params["wait_for_port"] is not None and port_open(params["wait_for_host"], params["wait_for_port"]):
        module.fail_json(msg=f"port {params['wait_for_port']} on {params['wait_for_host']} is already taken by "
                             f"another program, so {os.path.basename(argv[0])} cannot listen there; "
                             "free it or pick another port")
    os.makedirs(os.path.dirname(pidfile), exist_ok=True)
    log_path = params["log"] or os.devnull
    if params["log"]:
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
    command = argv if not params["netns"] else ["ip", "netns", "exec", params["netns"], *argv]
    environment = {**os.environ, **{key: str(value) for key, value in params["env"].items()}}
    with open(os.devnull, "rb") as stdin, open(log_path, "ab") as log:
        try:
            process = subprocess.Popen(command, stdin=stdin, stdout=log, stderr=log, env=environment,
                                       start_new_session=True, close_fds=True)
        except OSError as exc:
            module.fail_json(msg=f"cannot start {argv[0]}: {exc.strerror}")
    with open(pidfile, "w", encoding="ascii") as handle:
        handle.write(f"{process.pid}\n")
    port, path = params["wait_for_port"], params["wait_for_path"]
    awaited = port is not None or path is not None
    # with nothing to wait for, a program that survives 0.3 s counts as started
    deadline = time.monotonic() + (params["start_timeout"] if awaited else 0.3)
    while not ready(params["wait_for_host"], port, path):
        if process.poll() is not None:
            module.fail_json(msg=f"{argv[0]} exited with status {process.returncode} right after starting"
                                 f"{log_tail(params['log'])}", pid=process.pid)
        if time.monotonic() > deadline:
            if not awaited:
                break
            what = f"open port {port}" if port is not None else f"create {path}"
            module.fail_json(msg=f"{argv[0]} did not {what} within {params['start_timeout']:g} s"
                                 f"{log_tail(params['log'])}", pid=process.pid)
        time.sleep(0.05)
    module.exit_json(changed=True, pid=process.pid)


def stop(module: AnsibleModule) -> None:
    """SIGTERM every recorded process at once, SIGKILL what outlives stop_timeout, remove the PID files."""
    if module.params["pid_dir"]:
        directory = module.params["pid_dir"]
        names = sorted(os.listdir(directory)) if os.path.isdir(directory) else []
        pidfiles = [os.path.join(directory, name) for name in names if name.endswith(".pid")]
    else:
        given = module.params["pidfiles"]  # an empty list: nothing to stop
        pidfiles = given if given is not None else [module.params["pidfile"]]
    pids = {pidfile: recorded_pid(pidfile) for pidfile in pidfiles}
    alive = [pid for pidfile, pid in pids.items()
             if pid is not None and runs_program(pid, None) and started_before(pid, pidfile)]
    existing = [pidfile for pidfile in pidfiles if os.path.exists(pidfile)]
    if module.check_mode:
        module.exit_json(changed=bool(alive or existing), stopped=alive)
    for pid in alive:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + module.params["stop_timeout"]
    while any(runs_program(pid, None) for pid in alive) and time.monotonic() < deadline:
        time.sleep(0.05)
    killed = [pid for pid in alive if runs_program(pid, None)]
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    for pidfile in existing:
        os.unlink(pidfile)
    module.exit_json(changed=bool(alive or existing), stopped=alive, killed=killed)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "pidfile": {"type": "path"},
            "pidfiles": {"type": "list", "elements": "path"},
            "pid_dir": {"type": "path"},
            "argv": {"type": "list", "elements": "str"},
            "log": {"type": "path"},
            "env": {"type": "dict", "default": {}},
            "netns": {"type": "str"},
            "state": {"type": "str", "choices": ["started", "stopped"], "default": "started"},
            "wait_for_port": {"type": "int"},
            "wait_for_host": {"type": "str", "default": "127.0.0.1"},
            "wait_for_path": {"type": "path"},
            "start_timeout": {"type": "float", "default": 10.0},
            "stop_timeout": {"type": "float", "default": 5.0},
        },
        supports_check_mode=True,
        required_one_of=[("pidfile", "pidfiles", "pid_dir")],
    )
    if module.params["state"] == "started":
        if not module.params["pidfile"]:
            module.fail_json(msg="pidfile_daemon: state=started needs pidfile")
        start(module)
    stop(module)


if __name__ == "__main__":
    main()
