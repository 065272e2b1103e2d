"""Run commands on a lab node over SSH (paramiko), with the node's host key checked against a known_hosts file.

Unknown or changed host keys are refused (paramiko's ``RejectPolicy``); nothing is ever added to
known_hosts automatically. The private key's passphrase comes from the environment (never from a file
in the repository) and never appears in a message, a log line or an exception.
"""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import paramiko

from core.commands import CommandError, CommandResult, CommandRunner
from core.errors import InputError

READ_CHUNK = 65536


@dataclass(frozen=True)
class SshTarget:
    """Where and as whom to log in. ``passphrase_env`` names the variable holding the key's passphrase."""

    host: str
    user: str
    key_file: Path
    known_hosts: Path
    port: int = 22
    passphrase_env: str | None = None
    become: bool = False
    connect_timeout_s: float = 10.0
    label: str = field(default="", compare=False)

    @property
    def node(self) -> str:
        return self.label or f"{self.user}@{self.host}:{self.port}"


class SshRunner(CommandRunner):
    """A :class:`CommandRunner` on a remote node. With ``become``, commands run through ``sudo -n``."""

    def __init__(self, target: SshTarget) -> None:
        self.target = target
        self.node = target.node
        self._client: paramiko.SSHClient | None = None

    def run(self, argv: Sequence[str], timeout_s: float = 30.0) -> CommandResult:
        return self._exec(argv, timeout_s)

    def read_file(self, path: str) -> str:
        result = self._exec(["cat", "--", path], 30.0)
        if result.returncode != 0:
            raise CommandError(f"{self.node}: cannot read {path}: {_last_line(result.stderr)}")
        return result.stdout

    def write_file(self, path: str, text: str) -> None:
        result = self._exec(["tee", "--", path], 30.0, stdin=text)
        if result.returncode != 0:
            raise CommandError(f"{self.node}: cannot write {text.strip()!r} to {path}: {_last_line(result.stderr)}")

    def close(self) -> None:
        """Close the SSH connection (a later command opens a new one)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> SshRunner:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _exec(self, argv: Sequence[str], timeout_s: float, stdin: str | None = None) -> CommandResult:
        command = shlex.join(["sudo", "-n", "--", *argv] if self.target.become else list(argv))
        try:
            channel = self._transport().open_session(timeout=self.target.connect_timeout_s)
            channel.exec_command(command)
            if stdin is not None:
                channel.sendall(stdin.encode())
            channel.shutdown_write()
            stdout, stderr = _drain(channel, time.monotonic() + timeout_s)
        except TimeoutError:
            self.close()  # the channel may be stuck: start afresh next time
            raise CommandError(f"{self.node}: `{shlex.join(argv)}` did not finish within {timeout_s:g} s") from None
        except (paramiko.SSHException, OSError) as exc:
            self.close()
            raise CommandError(f"{self.node}: SSH session failed: {type(exc).__name__}: {exc}") from None
        return CommandResult(channel.recv_exit_status(), stdout.decode(errors="replace"),
                             stderr.decode(errors="replace"))

    def _transport(self) -> paramiko.Transport:
        transport = self._connect().get_transport()
        if transport is None:  # closed between connecting and opening the channel
            raise paramiko.SSHException("the SSH transport closed")
        return transport

    def _connect(self) -> paramiko.SSHClient:
        if self._client is not None:
            transport = self._client.get_transport()
            if transport is not None and transport.is_active():
                return self._client
        target = self.target
        if not target.known_hosts.is_file():
            raise InputError(f"known_hosts file {target.known_hosts} does not exist; add the host keys of the lab "
                             f"nodes to it (ssh-keyscan -p {target.port} {target.host}, then verify the fingerprints)")
        if not target.key_file.is_file():
            raise InputError(f"SSH key file {target.key_file} for {target.node} does not exist")
        key = self._load_key()
        client = paramiko.SSHClient()
        client.load_host_keys(str(target.known_hosts))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(target.host, port=target.port, username=target.user, pkey=key,
                           timeout=target.connect_timeout_s, banner_timeout=target.connect_timeout_s,
                           auth_timeout=target.connect_timeout_s,
                           allow_agent=False, look_for_keys=False)
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise CommandError(f"{target.node}: the host key ({exc.key.get_name()} {exc.key.fingerprint}) does not "
                                f"match the entry in {target.known_hosts}; refusing to connect (verify the node "
                                "and replace the entry if its key really changed)") from None
        except paramiko.AuthenticationException:
            client.close()
            raise CommandError(f"{target.node}: SSH authentication with key {target.key_file} failed (the key is "
                                f"not in {target.user}'s authorized_keys)") from None
        except paramiko.SSHException as exc:
            client.close()
            if "not found in known_hosts" in str(exc):
                raise CommandError(f"{target.node}: host key not found in {target.known_hosts}; refusing to "
                                    "connect to an unverified host (add its key after checking the fingerprint)"
                                    ) from None
            raise CommandError(f"{target.node}: SSH connection failed: {exc}") from None
        except OSError as exc:
            client.close()
            raise CommandError(f"{target.node}: cannot reach the SSH server: {exc.strerror or exc}") from None
        self._client = client
        return client

    def _load_key(self) -> paramiko.PKey:
        key_file = self.target.key_file
        try:
            # types-paramiko says str; the key loaders (cryptography) need bytes
            return paramiko.PKey.from_path(key_file, password=self._passphrase())  # type: ignore[arg-type]
        except paramiko.PasswordRequiredException:
            raise InputError(f"SSH key {key_file} is encrypted; put its passphrase in an environment variable and "
                             "name that variable in passphrase_env") from None
        except (paramiko.SSHException, ValueError) as exc:
            raise InputError(f"SSH key {key_file} cannot be loaded (wrong passphrase or unsupported key format: "
                             f"{type(exc).__name__})") from None

    def _passphrase(self) -> bytes | None:
        name = self.target.passphrase_env
        if name is None:
            return None
        value = os.environ.get(name)
        if not value:
            raise InputError(f"environment variable {name} (the passphrase of {self.target.key_file}) is not set")
        return value.encode()


def _drain(channel: paramiko.Channel, deadline: float) -> tuple[bytes, bytes]:
    """Read stdout and stderr until the command exits; raise ``TimeoutError`` past ``deadline``."""
    stdout, stderr = bytearray(), bytearray()
    while True:
        finished = channel.exit_status_ready() and channel.eof_received  # checked first: no data comes after
        busy = False
        if channel.recv_ready():
            stdout += channel.recv(READ_CHUNK)
            busy = True
        if channel.recv_stderr_ready():
            stderr += channel.recv_stderr(READ_CHUNK)
            busy = True
        if busy:
            continue
        if finished:
            return bytes(stdout), bytes(stderr)
        if time.monotonic() > deadline:
            channel.close()
            raise TimeoutError
        channel.status_event.wait(0.02)


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else "no error message"
