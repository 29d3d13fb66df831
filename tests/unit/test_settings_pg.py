"""The ``postgres:`` and ``pgbouncer:`` settings (opskit/pg/settings.py), through the real
loader (pg.config.node / bouncer / load) and ``settings.check``: typos named with file, line,
group and the right key; wrong types and hostile values refused in one line; the defaults
are those the config used before the schema."""

from __future__ import annotations

import pytest

from opskit import inventory, settings
from opskit.errors import InventoryError
from opskit.pg import config
from opskit.pg.settings import PgbouncerSettings, PostgresSettings

INV = """\
all:
  children:
    db:
      hosts:
        db1: {ansible_host: 10.0.0.1}
        db2: {ansible_host: 10.0.0.2}
      vars:
        postgres:
          data_directory: /data/pg/15/main
          pgbouncer: lb
          %(pg)s
    lb:
      hosts:
        lb1:
          ansible_host: 10.0.0.9
          pgbouncer:
            ini: /etc/pgbouncer/pgbouncer.ini
            databases: [app]
            %(pb)s
"""


def load(pg: str = "cluster: main", pb: str = "port: 6432") -> inventory.Inventory:
    return inventory.loads(INV % {"pg": pg, "pb": pb}, "x.yml")


def node_error(pg: str) -> InventoryError:
    with pytest.raises(InventoryError) as caught:
        config.node(load(pg=pg).hosts["db1"])
    assert "\n" not in caught.value.message
    return caught.value


def bouncer_error(pb: str) -> InventoryError:
    with pytest.raises(InventoryError) as caught:
        config.bouncer(load(pb=pb).hosts["lb1"])
    assert "\n" not in caught.value.message
    return caught.value


def test_a_misspelt_postgres_key_names_file_line_group_and_the_right_key() -> None:
    err = node_error("max_lag_byte: 1024")
    assert err.message == "x.yml line 11, group 'db': postgres.max_lag_byte: unknown key"
    assert err.hint == "did you mean postgres.max_lag_bytes?"
    inv = load(pg="max_lag_byte: 1024")
    with pytest.raises(InventoryError, match="max_lag_byte: unknown key"):
        config.load(inv, inv.select("db"))
    problems = [str(p) for p in settings.check(inv.hosts.values(), inv)]
    assert problems == ["x.yml line 11, group 'db': postgres.max_lag_byte: unknown key "
                        "(did you mean postgres.max_lag_bytes?)"]


def test_a_misspelt_pgbouncer_key_names_the_host() -> None:
    err = bouncer_error("admin_usr: pgbouncer")
    assert err.message == "x.yml line 19, host 'lb1': pgbouncer.admin_usr: unknown key"
    assert err.hint == "did you mean pgbouncer.admin_user?"
    inv = load(pb="admin_usr: pgbouncer")
    with pytest.raises(InventoryError, match="pgbouncer.admin_usr"):
        config.load(inv, inv.select("db"))
    assert [p.key for p in settings.check(inv.hosts.values(), inv)] == ["pgbouncer.admin_usr"]


def test_a_misspelt_var_name_is_not_ignored() -> None:
    inv = inventory.loads("all: {hosts: {db1: {postgress: {data_directory: /pg}}}}", "x.yml")
    problems = [str(p) for p in settings.check(inv.hosts.values(), inv)]
    assert problems == ["x.yml line 1, host 'db1': postgress: is not an opskit setting "
                        "(did you mean postgres?)"]


def test_dbname_is_not_a_setting() -> None:
    """postgres.dbname was read by nothing (the write check goes through the first of
    pgbouncer.databases): it is an unknown key now, even with a hostile value."""
    for value in ("app", '"app\\n[pgbouncer]"'):
        err = node_error(f"dbname: {value}")
        assert err.message == "x.yml line 11, group 'db': postgres.dbname: unknown key"
    assert "dbname" not in PostgresSettings.model_fields
    assert "dbname" not in config.PgNode.__dataclass_fields__


@pytest.mark.parametrize(("pg", "key", "text"), [
    ("port: '5432'", "postgres.port", "(got '5432')"),
    ("port: true", "postgres.port", "(got True)"),
    ("port: 0", "postgres.port", "1-65535"),
    ("port: 70000", "postgres.port", "1-65535"),
    ("max_lag_bytes: true", "postgres.max_lag_bytes", "(got True)"),
    ("max_lag_bytes: -1", "postgres.max_lag_bytes", "0 or more"),
    ("max_lag_bytes: 1.5", "postgres.max_lag_bytes", "(got 1.5)"),
    ("bindir: usr/lib/postgresql/15/bin", "postgres.bindir", "absolute path"),
    ("socket_dir: run/postgresql", "postgres.socket_dir", "absolute path"),
    ("repmgr_conf: repmgr.conf", "postgres.repmgr_conf", "absolute path"),
    ("repmgr_user: 'repmgr password=x'", "postgres.repmgr_user", "plain name"),
    ("repmgr_db: 'repmgr host=evil'", "postgres.repmgr_db", "plain name"),
    ("os_user: -postgres", "postgres.os_user", "plain name"),
    ("app_user: 'app user'", "postgres.app_user", "plain name"),
    ("node_name: 'db 1'", "postgres.node_name", "plain name"),
    ("node_name: 12", "postgres.node_name", "(got 12)"),
    ("cluster: 'a/b'", "postgres.cluster", "plain name"),
    ("witnesses: [w1, w2]", "postgres.witnesses", "(got ['w1', 'w2'])"),
])
def test_wrong_postgres_values_are_refused_in_one_line(pg: str, key: str, text: str) -> None:
    err = node_error(pg)
    assert err.message.startswith(f"x.yml line 11, group 'db': {key}: "), err.message
    assert text in err.message


def test_a_relative_data_directory_and_a_missing_one() -> None:
    inv = inventory.loads("all: {hosts: {db1: {postgres: {data_directory: pg/main}}}}", "x.yml")
    with pytest.raises(InventoryError, match="postgres.data_directory: must be an absolute"):
        config.node(inv.hosts["db1"])
    inv = inventory.loads("all: {hosts: {db1: {postgres: {port: 5432}}}}", "x.yml")
    with pytest.raises(InventoryError) as caught:
        config.node(inv.hosts["db1"])
    assert caught.value.message == "x.yml line 1, host 'db1': postgres.data_directory: is missing"


@pytest.mark.parametrize(("pb", "key", "text"), [
    ("port: 0", "pgbouncer.port", "1-65535"),
    ("port: '6432'", "pgbouncer.port", "(got '6432')"),
    ("os_user: 'postgres\\n'", "pgbouncer.os_user", "plain name"),
    ("admin_user: ''", "pgbouncer.admin_user", "plain name"),
    ("psql: [psql]", "pgbouncer.psql", "(got ['psql'])"),
])
def test_wrong_pgbouncer_values_are_refused_in_one_line(pb: str, key: str, text: str) -> None:
    err = bouncer_error(pb)
    assert err.message.startswith(f"x.yml line 19, host 'lb1': {key}: "), err.message
    assert text in err.message


@pytest.mark.parametrize(("databases", "text"), [
    ('["app\\n[pgbouncer]"]', "plain name"),
    ("[]", "must list the [databases] entries"),
    ("[app, app]", "twice"),
    ("app", "(got 'app')"),
])
def test_pgbouncer_databases_are_plain_names(databases: str, text: str) -> None:
    text_inv = (INV % {"pg": "", "pb": ""}).replace("databases: [app]",
                                                     f"databases: {databases}")
    with pytest.raises(InventoryError) as caught:
        config.bouncer(inventory.loads(text_inv, "x.yml").hosts["lb1"])
    assert caught.value.message.startswith("x.yml line 18, host 'lb1': pgbouncer.databases")
    assert text in caught.value.message
    assert "\n" not in caught.value.message


def test_the_host_dependent_checks_stay_in_config() -> None:
    bad = INV.replace("db1: {ansible_host: 10.0.0.1}", 'db1: {ansible_host: "10.0.0.1\\nx"}')
    with pytest.raises(InventoryError, match="host db1: ansible_host"):
        config.node(inventory.loads(bad % {"pg": "", "pb": ""}, "x.yml").hosts["db1"])
    # A host name that is not a plain name needs postgres.node_name.
    odd = INV.replace("db1: {ansible_host: 10.0.0.1}", "db1 x: {ansible_host: 10.0.0.1}")
    with pytest.raises(InventoryError, match="host db1 x: the repmgr node name") as caught:
        config.node(inventory.loads(odd % {"pg": "", "pb": ""}, "x.yml").hosts["db1 x"])
    assert "postgres.node_name" in (caught.value.hint or "")
    named = INV.replace("db1: {ansible_host: 10.0.0.1}", "db1 x: {ansible_host: 10.0.0.1, "
                        "postgres: {data_directory: /pg, node_name: db1}}")
    n = config.node(inventory.loads(named % {"pg": "", "pb": ""}, "x.yml").hosts["db1 x"])
    assert (n.name, n.node_name) == ("db1 x", "db1")


def test_no_postgres_or_pgbouncer_vars() -> None:
    inv = inventory.loads("all: {hosts: {h: {ansible_host: 10.0.0.1}}}", "x.yml")
    with pytest.raises(InventoryError, match="has no postgres settings"):
        config.node(inv.hosts["h"])
    with pytest.raises(InventoryError, match="has no pgbouncer settings"):
        config.bouncer(inv.hosts["h"])


def test_the_defaults_are_the_ones_used_before() -> None:
    inv = inventory.loads(INV % {"pg": "", "pb": ""}, "x.yml")
    n = config.node(inv.hosts["db1"])
    assert (n.node_name, n.port, n.bindir, n.data_directory, n.repmgr_conf, n.os_user,
            n.socket_dir, n.app_user, n.max_lag_bytes, n.pgbouncer, n.repmgr_user,
            n.repmgr_db, n.cluster, n.witnesses) == (
        "db1", 5432, "/usr/lib/postgresql/15/bin", "/data/pg/15/main", "/etc/repmgr.conf",
        "postgres", "/var/run/postgresql", "postgres", 16 * 1024 * 1024, "lb",
        "repmgr", "repmgr", "main", None)
    assert n.conninfo() == ("host=10.0.0.1 port=5432 user=repmgr dbname=repmgr "
                            "connect_timeout=2")
    b = config.bouncer(inv.hosts["lb1"])
    assert (b.ini, b.port, b.admin_user, b.os_user, b.databases, b.psql) == (
        "/etc/pgbouncer/pgbouncer.ini", 6432, "pgbouncer", "postgres", ("app",), "psql")
    cluster = config.load(inv, inv.select("db"))
    assert [b.name for b in cluster.bouncers] == ["lb1"] and cluster.name == "main"


def test_every_value_is_read_into_the_node() -> None:
    """No dead keys: each key of the schemas reaches PgNode / BouncerNode."""
    pg = ("node_name: n1\n          port: 5433\n          bindir: /opt/pg/bin\n"
          "          repmgr_conf: /etc/r.conf\n          os_user: pg\n"
          "          socket_dir: /run/pg\n          app_user: app\n"
          "          max_lag_bytes: 0\n          repmgr_user: rm\n          repmgr_db: rmdb\n"
          "          cluster: shard1\n          witnesses: lb")
    pb = ("port: 6433\n            admin_user: adm\n            os_user: pgb\n"
          "            psql: /usr/bin/psql")
    inv = load(pg=pg, pb=pb)
    n = config.node(inv.hosts["db1"])
    assert (n.node_name, n.port, n.bindir, n.repmgr_conf, n.os_user, n.socket_dir,
            n.app_user, n.max_lag_bytes, n.repmgr_user, n.repmgr_db, n.cluster,
            n.witnesses) == ("n1", 5433, "/opt/pg/bin", "/etc/r.conf", "pg", "/run/pg",
                             "app", 0, "rm", "rmdb", "shard1", "lb")
    b = config.bouncer(inv.hosts["lb1"])
    assert (b.port, b.admin_user, b.os_user, b.psql) == (6433, "adm", "pgb", "/usr/bin/psql")
    node_fields = set(config.PgNode.__dataclass_fields__)
    assert set(PostgresSettings.model_fields) <= node_fields
    assert set(PgbouncerSettings.model_fields) <= set(config.BouncerNode.__dataclass_fields__)


def test_a_pattern_that_selects_nothing_is_a_check_problem() -> None:
    for pg in ("witnesses: nosuch", "pgbouncer: nosuch"):
        inv = inventory.loads((INV % {"pg": "", "pb": ""}).replace("pgbouncer: lb", pg), "x.yml")
        problems = settings.check(inv.hosts.values(), inv)
        assert [p.key for p in problems] == [f"postgres.{pg.split(':')[0]}"], pg
        assert "selects no hosts" in problems[0].message


def test_null_patterns_mean_none() -> None:
    inv = inventory.loads((INV % {"pg": "witnesses: null", "pb": ""})
                          .replace("pgbouncer: lb", "pgbouncer: null"), "x.yml")
    n = config.node(inv.hosts["db1"])
    assert (n.pgbouncer, n.witnesses) == (None, None)
    assert config.load(inv, inv.select("db")).bouncers == ()
    assert settings.check(inv.hosts.values(), inv) == []
