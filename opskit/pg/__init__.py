"""PostgreSQL with repmgr and PgBouncer: cluster status and the failover runbooks.

``config`` reads the inventory, ``lsn`` does WAL position arithmetic, ``tools`` runs the
server's tools (psql, pg_ctl, repmgr) on the hosts, ``state`` gathers what every node and
PgBouncer says, ``checks`` decides (warnings, the failover target, refusals), ``bouncer``
re-points PgBouncer, and ``failover``/``switchover``/``rejoin`` are the runbooks, run step by
step by ``opskit.runner.runbook``.
"""
