"""Deploys: Capistrano-style releases, graceful gunicorn reloads, rolling batches, ELB rotation.

See docs/deploy.md. The command modules and fabfile tasks call these functions.
"""

from opskit.deploy.artifact import Artifact, build, from_git, from_tarball
from opskit.deploy.config import check_release_name
from opskit.deploy.releases import drift, list_releases, rollback, rollback_interrupted_summary
from opskit.deploy.rollout import (
    DeployOptions,
    DeployResult,
    deploy,
    interrupted_summary,
    leases,
    load_configs,
    plan,
)

__all__ = [
    "interrupted_summary",
    "rollback_interrupted_summary",
    "Artifact",
    "build",
    "check_release_name",
    "DeployOptions",
    "DeployResult",
    "deploy",
    "drift",
    "from_git",
    "from_tarball",
    "leases",
    "list_releases",
    "load_configs",
    "plan",
    "rollback",
]
