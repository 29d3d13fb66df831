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


def test_deploy_plans_every_app_and_worker_host(inv: Inventory) -> None:
    from opskit.deploy import config

    for host in [*inv.members("app"), *inv.members("gearman_worker")]:
        cfg = config.load(host)
        assert cfg.root == "/srv/instagram" and cfg.keep_releases == 5
    app = config.load(inv.hosts["app07"])
    assert app.reload == "hup" and app.pid_file and app.health_url == "http://app07:8000/health/"
    worker = config.load(inv.hosts["worker03"])
    assert worker.reload == "command" and worker.health_url is None
    assert worker.reload_command == "systemctl restart gearman-workers"


@pytest.mark.parametrize("shard", SHARDS)
def test_each_shard_is_its_own_cluster_with_its_pgbouncers_and_witnesses(
        inv: Inventory, shard: str) -> None:
    from opskit.pg import config

    cluster = config.load(inv, inv.select(shard))
    n = shard[-2:]
    assert cluster.name == f"shard{n}"
    assert [x.name for x in cluster.nodes] == [f"pg{n}a", f"pg{n}b"]
    assert [b.name for b in cluster.bouncers] == [f"pg{n}a", f"pg{n}b"]
    assert cluster.bouncers[0].databases == ("instagram",)
    # With its primary down, the replica and the two witnesses are 3 of 4: a majority.
    assert [h.name for h in cluster.lock_hosts] == sorted(
        [f"pg{n}a", f"pg{n}b", "gearman01", "gearman02"])
    assert all(x.data_directory == "/data/postgresql/15/main" for x in cluster.nodes)


def test_a_selection_of_two_shards_is_refused_for_one_cluster(inv: Inventory) -> None:
    from opskit.errors import InventoryError
    from opskit.pg import config

    with pytest.raises(InventoryError, match="spans 2 PostgreSQL clusters: shard01, shard02"):
        config.load(inv, inv.select("pg_shard01:pg_shard02"))
    # Unless it names one: --cluster, or a host of it (pg failover pg02b).
    assert config.load(inv, inv.select("pg_shard01:pg_shard02"), cluster="shard02").name == \
        "shard02"
    assert config.load(inv, inv.select("db"), named=["pg07a"]).name == "shard07"


def test_pg_status_over_db_plans_twelve_clusters_each_whole(inv: Inventory) -> None:
    from opskit.pg import config

    fleet = config.fleet(inv, inv.select("db"))
    assert fleet.names == [f"shard{n:02d}" for n in range(1, 13)]
    assert all(len(c.nodes) == 2 and c.layout == "per-node" for c in fleet.clusters)
    assert all(not added for added in fleet.added.values())
    # "pg07a is down": -l pg07a is its whole cluster, pg07b added.
    paged = config.fleet(inv, inv.select("pg07a"))
    assert paged.names == ["shard07"] and paged.added == {"shard07": ("pg07b",)}


@pytest.mark.parametrize(("group", "name"), [("redis_feed1", "feed1"), ("redis_feed2", "feed2"),
                                           ("redis_activity", "activity"),
                                           ("redis_sessions", "sessions")])
def test_each_redis_pair_is_a_group_that_publishes_to_the_apps(
        inv: Inventory, group: str, name: str) -> None:
    from opskit.redis import config

    topology = config.load(inv, inv.select(group))
    assert topology.name == name and len(topology.instances) == 2
    assert all(i.port == 6379 and i.group == name for i in topology.instances)
    assert topology.publish is not None and topology.publish.hosts == "app"
    assert topology.publish.file.endswith(f"redis-{name}.json")


def test_redis_status_over_redis_plans_four_groups_and_a_runbook_needs_one(
        inv: Inventory) -> None:
    from opskit.errors import InventoryError
    from opskit.redis import config

    fleet = config.fleet(inv, inv.select("redis"))
    assert fleet.names == ["feed1", "activity", "sessions", "feed2"]
    # "redis02a is down": -l redis02a is its whole group, redis02b added.
    paged = config.fleet(inv, inv.select("redis02a"))
    assert paged.names == ["activity"] and paged.added == {"activity": ("redis02b:6379",)}
    with pytest.raises(InventoryError, match="spans 4 Redis groups: feed1, activity"):
        config.load(inv, inv.select("redis"))
    assert config.load(inv, inv.select("redis"), group="feed2").name == "feed2"
    assert config.load(inv, inv.select("redis"), named=["redis03b:6379"]).name == "sessions"
    with pytest.raises(InventoryError, match="redis03b:6379 is in the Redis group sessions"):
        config.load(inv, inv.select("redis"), group="feed1", named=["redis03b:6379"])


def test_health_thresholds_load_for_every_host(inv: Inventory) -> None:
    from opskit.health import checks

    for host in inv.hosts.values():
        checks.from_vars(host.vars, host.name)


def test_snapshots_plan_the_replicas_and_never_a_primary(inv: Inventory) -> None:
    from opskit.errors import SafetyError
    from opskit.snapshot import config

    for host in [*inv.members("db"), *inv.members("redis")]:
        replica = "pg_replica" in host.groups or "redis_replica" in host.groups
        assert config.enabled(host) is replica, host.name
        if replica:
            cfg = config.load(host, None, None)
            assert cfg.mount == "/data" and cfg.retention == "hourly"
        else:
            with pytest.raises(SafetyError):
                config.load(host, None, None)
    assert not any(config.enabled(h) for h in inv.members("pg_primary"))
    with_snapshots = [h for h in inv.hosts.values() if "snapshot" in h.vars]
    assert sum(config.enabled(h) for h in with_snapshots) == 12 + 4


def test_every_host_s_cache_settings_load(inv: Inventory) -> None:
    for host in inv.hosts.values():
        assert settings.of(host, "cache").model_dump() == {"python": "python3",
                                                           "vmtouch": "vmtouch"}
