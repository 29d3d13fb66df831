"""inventory/production.yml is true: the seed's fleet as described, every key one that opskit
reads and checks, and each command's planning step that needs no connection accepts it.

Nothing here connects: the fleet's names resolve only inside its VPC, and test traffic stays
on loopback; the planning steps are the domains' config loaders, which every command runs
before its first connection.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from opskit import inventory, settings
from opskit.inventory import Inventory

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = ROOT / "inventory" / "production.yml"
SHARDS = [f"pg_shard{n:02d}" for n in range(1, 13)]


@pytest.fixture(scope="module")
def inv() -> Inventory:
    return inventory.load(PRODUCTION)


def test_it_describes_the_seed_fleet(inv: Inventory) -> None:
    assert len(inv.groups["lb"].hosts) == 3
    assert len(inv.members("app")) >= 25
    assert len(inv.members("pg_primary")) == 12 and len(inv.members("pg_replica")) == 12
    assert len(inv.members("memcached")) == 6
    assert inv.members("solr") and inv.members("gearman") and inv.members("gearman_worker")
    assert {"redis_master", "redis_replica"} <= set(inv.groups["redis"].children)
    assert {"redis_feed", "redis_activity", "redis_sessions"} <= set(inv.groups)
    for host in inv.hosts.values():
        assert host.user == "ubuntu"
        assert host.domain("aws").get("region") == "us-east-1"
        assert "endpoint_url" not in host.domain("aws")
    # Each shard is a primary in one zone and its replica in the other.
    for shard in SHARDS:
        pair = inv.members(shard)
        assert len(pair) == 2
        roles = {r for h in pair for r in h.groups if r in ("pg_primary", "pg_replica")}
        assert roles == {"pg_primary", "pg_replica"}
    assert inv.select("pg_primary:&pg_shard0[1-4]") == [
        inv.hosts[n] for n in ("pg01a", "pg02a", "pg03a", "pg04a")]


def test_every_setting_is_valid(inv: Inventory) -> None:
    assert [str(p) for p in settings.check(inv.hosts.values(), inv)] == []


def test_inventory_check_passes_on_it() -> None:
    proc = subprocess.run([sys.executable, "-m", "opskit", "-i", str(PRODUCTION), "inventory",
                           "check"], capture_output=True, text=True, timeout=60, cwd=ROOT,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(inventory.load(PRODUCTION).hosts)} hosts, every setting valid" in proc.stdout
