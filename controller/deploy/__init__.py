"""Deploying testbeds with Ansible: the inventory model, preflight checks, the ansible-runner driver, state."""
