"""Testbed inventories: Ansible YAML files whose ``all.vars.testbed_mode`` says which testbed they describe.

``local`` (:mod:`.local`, the default): network namespaces on this host. ``lab`` (:mod:`.lab`): real nodes.
"""

from controller.deploy.inventory.document import inventory_mode
from controller.deploy.inventory.lab import LabInventory, load_lab_inventory
from controller.deploy.inventory.local import DEFAULT_INVENTORY, LocalInventory, load_inventory

__all__ = ["DEFAULT_INVENTORY", "LabInventory", "LocalInventory", "inventory_mode", "load_inventory",
           "load_lab_inventory"]
