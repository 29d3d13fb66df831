"""Inventory: which hosts exist and what is known about them. The model (``model``), loading
Ansible-compatible YAML (``loader``), host ranges (``hostrange``), --limit patterns
(``patterns``) and the EC2 source (``ec2``, imported only when a file asks for it).

Rule: imports nothing from transport, runner, the domains or the commands.

    inv = load("inventory/production.yml")
    for host in inv.select("app*:!app01"):
        host.address, host.user, host.domain("deploy")
"""

from opskit.inventory.loader import from_dict, load, loads
from opskit.inventory.model import Group, Host, Inventory

__all__ = ["Group", "Host", "Inventory", "from_dict", "load", "loads"]
