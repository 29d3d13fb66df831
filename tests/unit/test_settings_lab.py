"""The ``lab:`` settings (opskit/lab/settings.py): written by ``opskit lab up``, they mark a lab
host, which ``opskit health`` and ``top`` note (survey.notes_for); and the inventory the lab
writes passes every schema, postgres/pgbouncer/redis/lab included (no lab needed: the
inventory is rendered from the lab's plan, as ``lab up`` does)."""

from __future__ import annotations

import pathlib

import pytest
import yaml

from opskit import inventory, settings
from opskit.errors import InventoryError
from opskit.health import survey
from opskit.lab import inventory_file, layout, services
from opskit.lab.models import LabHost
from opskit.lab.settings import LabSettings


def hosts(text: str) -> list[inventory.Host]:
    return list(inventory.loads(text, "lab.yml").hosts.values())


def test_a_lab_host_gets_the_note_and_others_do_not() -> None:
    lab = hosts("all: {vars: {lab: {state_dir: /var/lib/opskit-lab}}, hosts: {h1: }}")
    assert survey.notes_for(lab) == [survey.LAB_NOTE]
    assert survey.notes_for(hosts("all: {hosts: {h1: }}")) == []


def test_a_misspelt_key_is_named_with_the_right_one() -> None:
    found = hosts("all: {vars: {lab: {state_dri: /var/lib/opskit-lab}}, hosts: {h1: }}")
    problems = [str(p) for p in settings.problems(found[0], "lab")]
    assert "lab.yml line 1, group 'all': lab.state_dri: unknown key (did you mean " \
           "lab.state_dir?)" in problems
    with pytest.raises(InventoryError):
        survey.notes_for(found)


@pytest.mark.parametrize(("lab", "expect"), [
    ("{}", "lab.state_dir: is missing"),
    ("{state_dir: var/lib/opskit-lab}", "lab.state_dir: must be an absolute path"),
    ("{state_dir: 5}", "lab.state_dir: input should be a valid string (got 5)"),
    ("/var/lib/opskit-lab", "lab: must be a mapping of settings"),
])
def test_wrong_lab_settings_are_refused_in_one_line(lab: str, expect: str) -> None:
    found = hosts(f"all: {{vars: {{lab: {lab}}}, hosts: {{h1: }}}}")
    with pytest.raises(InventoryError) as caught:
        survey.notes_for(found)
    assert caught.value.message.startswith(f"lab.yml line 1, group 'all': {expect}")
    assert "\n" not in caught.value.message
    assert [p.key for p in settings.check(found)] == [expect.split(":")[0]]


def test_the_lab_inventory_passes_every_schema(tmp_path: pathlib.Path) -> None:
    state = tmp_path / "lab"
    specs = layout.plan(12)
    lab_hosts = [LabHost(s.name, s.address, 22, s.name, None, s.groups,
                         state / "hosts" / s.name) for s in specs]
    ctx = services.LabContext(state, 2222, lab_hosts, runner=lambda name, argv: None)  # type: ignore[arg-type,return-value]
    doc = inventory_file.render(specs, port=2222, state_dir=state,
                                extra=services.inventory_vars(ctx))
    inv = inventory.loads(yaml.safe_dump(doc), "lab.yml")
    mine = ("postgres", "pgbouncer", "redis", "health", "lab")
    assert [p for p in settings.check(inv.hosts.values(), inv)
            if p.key.split(".")[0] in mine] == []
    lab = settings.of(inv.hosts["db1"], "lab")
    assert isinstance(lab, LabSettings) and lab.state_dir == str(state)
    for domain in ("postgres", "pgbouncer", "redis"):
        assert any(domain in h.vars for h in inv.hosts.values()), domain
    assert survey.notes_for(list(inv.hosts.values())) == [survey.LAB_NOTE]
