"""Ansible connection plugin ``netns``: the local connection, with every command run inside a network namespace.

The same roles then run on namespace nodes of the local testbed (``ansible_connection: netns``) and over ssh
on real lab hosts. Files are shared with the controller (namespaces share the mount namespace), so
``put_file``/``fetch_file`` are the local connection's.
"""

from __future__ import annotations

import shlex

from ansible.errors import AnsibleError
from ansible.plugins.connection.local import Connection as LocalConnection

DOCUMENTATION = """
    name: netns
    short_description: run tasks inside a Linux network namespace on the controller
    description:
        - The local connection, wrapping every command with C(ip netns exec NAME).
    author: slicebed
    options:
        netns_name:
            description: Name of the network namespace (as listed by C(ip netns list)).
            type: str
            required: true
            vars:
                - name: netns_name
        become_success_timeout:
            type: int
            default: 10
            description: As for the local connection.
            vars:
                - name: ansible_local_become_success_timeout
        become_strip_preamble:
            type: bool
            default: true
            description: As for the local connection.
            vars:
                - name: ansible_local_become_strip_preamble
    extends_documentation_fragment:
        - connection_pipelining
"""


class Connection(LocalConnection):
    """Local execution inside ``ip netns exec <netns_name>``."""

    transport = "netns"

    def exec_command(self, cmd: str, in_data: bytes | None = None, sudoable: bool = True) -> tuple[int, bytes, bytes]:
        namespace = self.get_option("netns_name")
        if not namespace:
            raise AnsibleError("the netns connection needs the variable netns_name")
        wrapped = f"ip netns exec {shlex.quote(namespace)} {cmd}"
        return super().exec_command(wrapped, in_data=in_data, sudoable=sudoable)
