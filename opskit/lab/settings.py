"""The ``lab:`` settings, written by ``opskit lab up`` into the lab's inventory (all: vars).

Its presence is what marks a host as a lab host: ``opskit health`` and ``opskit top`` then
note that the lab's hosts share one kernel (opskit/health/survey.py). Nobody writes it by hand.

This module imports pydantic: import it only through :func:`opskit.settings.of`.
"""

from __future__ import annotations

from opskit.settings.base import AbsPath, Field, Settings


class LabSettings(Settings):
    """Marks the hosts of the local lab fleet (``opskit lab up``)."""

    state_dir: AbsPath = Field(description="The lab's state directory (keys, known_hosts, "
                               "host roots), written by opskit lab up; its presence marks a "
                               "lab host, whose health readings are noted as shared with the "
                               "other lab hosts.")
