"""The local lab fleet: sshd hosts in mount + UTS namespaces on 127.10.0.N (docs/lab.md).

``opskit lab up|status|down`` is a thin wrapper over this API; tests use it directly.
Built-in services register themselves on import, in this order: ``data_fs`` (the XFS at
/data on ``db``; first, so everything later -- PostgreSQL -- finds /data mounted), then
``app_service`` (gunicorn on ``app``), ``pg_service`` (PostgreSQL + repmgr on db1-3, data
on /data), ``pgbouncer_service`` (PgBouncer on the first lb host, after its servers) and
``redis_service`` (redis1-3: the Redis groups main, tls and watched, and three Sentinels).
"""

from opskit.lab import data_fs  # noqa: F401,I001 -- registers data-xfs: must stay the first service
from opskit.lab import app_service  # noqa: F401 -- registers the built-in app service
from opskit.lab import pg_service  # noqa: F401 -- registers postgres (after data-xfs)
from opskit.lab import pgbouncer_service  # noqa: F401 -- registers pgbouncer (after postgres)
from opskit.lab import redis_service  # noqa: F401 -- registers redis (redis1-3)
from opskit.lab import nginx_service  # noqa: F401 -- registers nginx (every lb host)
from opskit.lab.accounts import DEV_USER, OPS_USER, dev_password_path
from opskit.lab.api import down, host_pid, lab_mounts, run_in_host, status, up
from opskit.lab.app_service import http_port as app_port
from opskit.lab.aws_resources import AwsLab
from opskit.lab.inventory_file import dev_path as dev_inventory_path
from opskit.lab.inventory_file import ops_path as ops_inventory_path
from opskit.lab.layout import DEFAULT_HOSTS, NETS, HostSpec, plan
from opskit.lab.models import AwsStatus, LabHost, LabStatus
from opskit.lab.services import (
    InventoryVars,
    LabContext,
    Service,
    register,
    registered,
    unregister,
)
from opskit.lab.state import DEFAULT_STATE_DIR, state_dir_from_env

__all__ = [
    "DEFAULT_STATE_DIR",
    "DEV_USER",
    "OPS_USER",
    "AwsLab",
    "AwsStatus",
    "app_port",
    "HostSpec",
    "InventoryVars",
    "LabContext",
    "LabHost",
    "LabStatus",
    "Service",
    "dev_inventory_path",
    "dev_password_path",
    "down",
    "host_pid",
    "lab_mounts",
    "ops_inventory_path",
    "DEFAULT_HOSTS",
    "NETS",
    "plan",
    "register",
    "registered",
    "run_in_host",
    "state_dir_from_env",
    "status",
    "unregister",
    "up",
]
