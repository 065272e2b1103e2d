"""SSH sessions to a lab's nodes, one per address, opened on first use and closed together."""

from __future__ import annotations

import os
from pathlib import Path

from controller.actuators.ssh import SshRunner, SshTarget
from controller.deploy.inventory.lab import SshSettings
from core.commands import CommandRunner
from core.errors import InputError


class SshRunners:
    """One SSH runner per node address, logging in as the inventory's Ansible does (user and key from env)."""

    def __init__(self, settings: SshSettings) -> None:
        key = os.environ.get(settings.key_env)
        if not key:
            raise InputError(f"set {settings.key_env} to the SSH private key of the lab nodes")
        self.settings = settings
        self.user = os.environ.get(settings.user_env, "ubuntu")
        self.key = Path(key).expanduser()
        self.runners: dict[str, SshRunner] = {}

    def __call__(self, host: str) -> CommandRunner:
        """The runner for node ``host`` (an address), connected on first use."""
        if host not in self.runners:
            settings = self.settings
            self.runners[host] = SshRunner(SshTarget(
                host=host, user=self.user, key_file=self.key, known_hosts=settings.known_hosts.expanduser(),
                port=settings.port, passphrase_env=settings.passphrase_env, become=settings.become))
        return self.runners[host]

    def close(self) -> None:
        for runner in self.runners.values():
            runner.close()
