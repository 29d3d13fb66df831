"""The shape of the lab fleet: host names, roles, groups and loopback addresses.

Host i (1-based) gets its role from a fixed sequence, so growing the lab only appends hosts
and shrinking only drops the last ones -- a host keeps its name and address whatever the count:

* hosts 1..13 follow ``app db redis lb app db redis app db redis shard shard lb``
  (1 → app1; 4 → app1 db1 redis1 lb1; 10 → lb1, app1-3, db1-3, redis1-3: a PostgreSQL
  primary with two standbys and the Redis groups on redis1-3; 12 adds shard1 and
  shard2, a second PostgreSQL cluster of two nodes with a PgBouncer on each; 13 (the
  default) adds lb2, a second nginx in front of the app hosts);
* hosts 14.. repeat ``app app app db app app app redis app app app lb``
  (three of every four extra hosts are app servers, like a production fleet).

Host i listens on 127.10.0.i (i ≤ 254); beyond that the third octet counts up
(127.10.1.1 is host 255). A lab on another ``net`` (``lab up --net 11``) uses 127.11.0.i the
same way, so two labs can run side by side with the same service ports (two test workers).
The first db host is ``pg_primary``, the others ``pg_replica``; the first redis host is
``redis_master``, the others ``redis_replica``.

A lab big enough for the whole PostgreSQL cluster (9 hosts or more: db3 is host 9) also has
the top-level groups ``postgres`` (db1-db3: the nodes, pg_service.py) and ``pgbouncer``
(lb1, pgbouncer_service.py); one big enough for the Redis master and its two replicas (10 or
more: redis3 is host 10) has ``redis_servers`` (redis1-redis3, redis_service.py). Smaller labs
run neither, so a small test lab never clashes on 127.10.0.2:5432 (or .3:6379) with a bigger
lab running beside it; db4, redis4 and later never join (big labs stay light). The ``shard``
hosts (11 and 12) are the second PostgreSQL cluster (postgres.cluster ``shard``): they are
not in ``db``, so ``-l db`` stays the one cluster ``main`` (its runbooks need no
``--cluster``), and ``opskit pg status`` without ``-l`` shows both.
"""

from __future__ import annotations

from dataclasses import dataclass

ROLES = ("lb", "app", "db", "redis", "shard")  # inventory order
SUBGROUPS = {"db": ("pg_primary", "pg_replica"), "redis": ("redis_master", "redis_replica")}
# Top-level groups of the lab's clusters: group -> (role, how many of its first hosts).
CLUSTER_GROUPS = {"postgres": ("db", 3), "pgbouncer": ("lb", 1), "redis_servers": ("redis", 3)}
# A cluster's groups exist only in labs that have all of its hosts (PgBouncer belongs to the
# PostgreSQL cluster: lb1 alone, in a 4-host lab, gets none).
CLUSTERS = (("postgres", "pgbouncer"), ("redis_servers",))
FIRST_HOSTS = ("app", "db", "redis", "lb", "app", "db", "redis", "app", "db", "redis",
               "shard", "shard", "lb")
DEFAULT_HOSTS = len(FIRST_HOSTS)  # the default lab: every service, two of the nginx tier
EXTRA_CYCLE = ("app", "app", "app", "db", "app", "app", "app", "redis", "app", "app", "app", "lb")
MAX_HOSTS = 1000
DEFAULT_NET = 10  # the second octet: 127.10.0.1 is host 1
NETS = range(10, 128)  # clear of 127.0.0.1 (moto, the operator's own services)


@dataclass(frozen=True)
class HostSpec:
    name: str
    index: int  # 1-based position in the growth sequence
    role: str
    address: str
    groups: tuple[str, ...]  # role first, then its subgroup if any, then CLUSTER_GROUPS


def role_of(index: int) -> str:
    if index <= len(FIRST_HOSTS):
        return FIRST_HOSTS[index - 1]
    return EXTRA_CYCLE[(index - len(FIRST_HOSTS) - 1) % len(EXTRA_CYCLE)]


def address_of(index: int, net: int = DEFAULT_NET) -> str:
    # 254 usable addresses per /24; skip .0 and .255 so no address looks like a network/broadcast.
    third, fourth = divmod(index - 1, 254)
    return f"127.{net}.{third}.{fourth + 1}"


def plan(count: int, net: int = DEFAULT_NET) -> list[HostSpec]:
    """The hosts of a lab of ``count`` hosts on 127.``net``.x.x, in growth order."""
    if not 1 <= count <= MAX_HOSTS:
        raise ValueError(f"a lab has 1 to {MAX_HOSTS} hosts, not {count}")
    if net not in NETS:
        raise ValueError(f"a lab's net is {NETS.start} to {NETS.stop - 1}, not {net}")
    roles = [role_of(index) for index in range(1, count + 1)]
    complete = {
        group
        for cluster in CLUSTERS
        if all(roles.count(CLUSTER_GROUPS[g][0]) >= CLUSTER_GROUPS[g][1] for g in cluster)
        for group in cluster
    }
    seen: dict[str, int] = {}
    specs = []
    for index, role in enumerate(roles, start=1):
        seen[role] = seen.get(role, 0) + 1
        groups: tuple[str, ...] = (role,)
        if role in SUBGROUPS:
            first, rest = SUBGROUPS[role]
            groups += (first if seen[role] == 1 else rest,)
        joins = CLUSTER_GROUPS.items()
        groups += tuple(
            g for g, (r, n) in joins if g in complete and r == role and seen[role] <= n
        )
        specs.append(HostSpec(f"{role}{seen[role]}", index, role, address_of(index, net), groups))
    return specs
