"""What opskit refuses instead of ignoring, INI details, ssh args, scripts that fail: each is
one line naming the file, the line and the var."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from opskit import inventory
from opskit.errors import InventoryError
from opskit.inventory import json_source, refuse


def write(path: Path, text: str, mode: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mode is not None:
        path.chmod(mode)
    return path


def refused(path: Path) -> InventoryError:
    with pytest.raises(InventoryError) as err:
        inventory.load(path)
    assert "\n" not in err.value.message
    return err.value


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(("text", "line", "key", "why"), [
    ("web:\n  vars:\n    url: 'http://{{ host }}/'\n", 3, "url", "Jinja template"),
    ("web:\n  vars:\n    deploy:\n      path: /srv\n      branch: '{% if x %}a{% endif %}'\n",
     5, "deploy.branch", "Jinja template"),
    ("web:\n  hosts:\n    a:\n      items: [ok, '{# note #}']\n", 4, "items.1", "Jinja template"),
    ("web:\n  vars:\n    secret: !vault |\n      $ANSIBLE_VAULT;1.1;AES256\n      6162\n", 3,
     "secret", "vault-encrypted"),
    ("web:\n  vars:\n    secret: \"$ANSIBLE_VAULT;1.1;AES256\\n6162\"\n", 3, "secret",
     "vault-encrypted"),
])
def test_templates_and_vaulted_values_are_refused(tmp_path: Path, text: str, line: int,
                                                  key: str, why: str) -> None:
    err = refused(write(tmp_path / "x.yml", text))
    assert err.message.startswith(f"{tmp_path / 'x.yml'} line {line}: {key} of ")
    assert why in err.message
    if why == "vault-encrypted":
        assert err.hint == refuse.VAULT_HINT


def test_unsafe_values_are_literal() -> None:
    inv = inventory.loads("web:\n  hosts:\n    a: {motd: !unsafe 'hi {{ user }}'}\n")
    assert inv.hosts["a"].vars["motd"] == "hi {{ user }}"
    assert type(inv.hosts["a"].vars["motd"]) is str


@pytest.mark.parametrize(("var", "hint"), [
    ("ansible_become", "--sudo"),
    ("ansible_become_user", "--sudo"),
    ("ansible_become_method", "--sudo"),
    ("ansible_sudo_pass", "--sudo"),
    ("ansible_ssh_pass", "SSH keys"),
    ("ansible_password", "SSH keys"),
    ("ansible_ssh_executable", "paramiko"),
    ("ansible_ssh_pipelining", "paramiko"),
    ("ansible_ssh_host", "ansible_host"),
    ("ansible_group_priority", "depth"),
    ("ansible_hots", "did you mean ansible_host?"),
    ("ansible_winrm_transport", "does not honour"),
])
def test_ansible_vars_opskit_does_not_honour_are_refused(tmp_path: Path, var: str,
                                                         hint: str) -> None:
    err = refused(write(tmp_path / "x.yml", f"all:\n  vars:\n    ok: 1\n    {var}: true\n"))
    assert err.message == f"{tmp_path / 'x.yml'} line 4: {var} of group 'all' is not " \
        "supported by opskit"
    assert err.hint and hint in err.hint


def test_unknown_opskit_var_gets_a_did_you_mean(tmp_path: Path) -> None:
    err = refused(write(tmp_path / "x.yml", "web:\n  hosts:\n    a: {opskit_knwon_hosts: /k}\n"))
    assert err.message == f"{tmp_path / 'x.yml'} line 3: unknown opskit var " \
        "opskit_knwon_hosts of host 'a'"
    assert err.hint == "did you mean opskit_known_hosts?"


def test_known_opskit_and_ignored_ansible_vars_load() -> None:
    inv = inventory.loads("all:\n  vars: {opskit_lease_dir: /run/l, "
                          "ansible_python_interpreter: /usr/bin/python3}\n  hosts: {a: }\n")
    assert inv.hosts["a"].vars["opskit_lease_dir"] == "/run/l"


def test_the_names_opskit_reads_are_the_ones_it_accepts() -> None:
    from opskit.runner import lease

    assert lease.DIR_VAR in refuse.OPSKIT_VARS


@pytest.mark.parametrize(("name", "text", "line", "key"), [
    ("group_vars/web.yml", "a: 1\nb: '{{ a }}'\n", 2, "b"),
    ("group_vars/web/10.yml", "ansible_become: yes\n", 1, "ansible_become"),
    ("host_vars/app1.json", '{"x": 1,\n "ansible_ssh_pass": "pw"}\n', 2, "ansible_ssh_pass"),
])
def test_vars_files_are_checked_with_their_file_and_line(tmp_path: Path, name: str, text: str,
                                                         line: int, key: str) -> None:
    write(tmp_path / "hosts", "[web]\napp1\n")
    write(tmp_path / name, text)
    err = refused(tmp_path / "hosts")
    assert err.message.startswith(f"{tmp_path / name} line {line}: {key} of ")


def test_a_vaulted_vars_file_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "hosts", "[web]\napp1\n")
    write(tmp_path / "group_vars" / "web.yml", "$ANSIBLE_VAULT;1.1;AES256\n3634\n")
    err = refused(tmp_path / "hosts")
    assert err.message == f"{tmp_path / 'group_vars' / 'web.yml'} line 1: the file is " \
        "vault-encrypted"
    assert err.hint == refuse.VAULT_HINT


def test_two_forms_of_one_vars_file_are_refused(tmp_path: Path) -> None:
    write(tmp_path / "hosts", "[web]\napp1\n")
    write(tmp_path / "group_vars" / "web", "a: 1\n")
    write(tmp_path / "group_vars" / "web.yml", "a: 2\n")
    err = refused(tmp_path / "hosts")
    assert "both web and web.yml hold vars for 'web'" in err.message


def test_group_vars_below_the_inventory_directory_are_refused(tmp_path: Path) -> None:
    write(tmp_path / "site" / "hosts.ini", "[web]\napp1\n")
    write(tmp_path / "site" / "group_vars" / "web.yml", "a: 1\n")
    inv = inventory.load(tmp_path / "site")
    assert inv.hosts["app1"].vars == {"a": 1}
    write(tmp_path / "site" / "sub" / "more.ini", "[db]\ndb1\n")
    write(tmp_path / "site" / "sub" / "group_vars" / "db.yml", "a: 1\n")
    err = refused(tmp_path / "site")
    assert err.message.startswith(f"{tmp_path / 'site' / 'sub' / 'group_vars'}: ")


# --------------------------------------------------------------------------- ssh args


LAB_ARGS = "-o UserKnownHostsFile=/s/known_hosts -o StrictHostKeyChecking=yes"


def test_the_lab_inventory_ssh_args_load() -> None:
    inv = inventory.loads(f"all:\n  vars:\n    opskit_known_hosts: /s/known_hosts\n"
                          f"    ansible_ssh_common_args: {LAB_ARGS}\n  hosts: {{a: }}\n")
    assert inv.hosts["a"].known_hosts == "/s/known_hosts"
    assert inv.hosts["a"].known_hosts_files == ["/s/known_hosts"]


def test_honoured_ssh_args_reach_the_host() -> None:
    inv = inventory.loads("all:\n  vars:\n    ansible_ssh_common_args: >-\n"
                          "      -o Port=2222 -oUser=ops -i ~/.ssh/k\n"
                          "      -o 'UserKnownHostsFile /x/kh'\n  hosts: {a: }\n")
    host = inv.hosts["a"]
    assert (host.port, host.user) == (2222, "ops")
    assert host.key_file and host.key_file.endswith("/.ssh/k") and "~" not in host.key_file
    assert host.known_hosts == "/x/kh"


@pytest.mark.parametrize(("args", "says", "hint"), [
    ("-o ProxyCommand='ssh -W %h:%p bastion'", "ProxyCommand", "~/.ssh/config"),
    ("-o ProxyJump=bastion", "ProxyJump", "~/.ssh/config"),
    ("-J bastion", "-J bastion", "~/.ssh/config"),
    ("-o StrictHostKeyChecking=no", "StrictHostKeyChecking=no", "--insecure"),
    ("-o ForwardAgent=yes", "ForwardAgent", "~/.ssh/config"),
    ("-C", "'-C'", "ansible_port"),
    ("-o Port=http", "Port=http", "2222"),
    ("-o 'Port=22", "No closing quotation", "quotes"),
])
def test_other_ssh_args_are_refused(tmp_path: Path, args: str, says: str, hint: str) -> None:
    text = f'web:\n  hosts:\n    a:\n      x: 1\n      ansible_ssh_common_args: "{args}"\n'
    err = refused(write(tmp_path / "x.yml", text))
    assert err.message.startswith(f"{tmp_path / 'x.yml'} line 5: ansible_ssh_common_args of "
                                  "host 'a': ")
    assert says in err.message and err.hint and hint in err.hint


def test_ssh_args_that_contradict_a_plain_var_are_refused(tmp_path: Path) -> None:
    text = ("all:\n  vars:\n    ansible_ssh_extra_args: -o Port=2222\n  hosts:\n"
            "    a: {ansible_port: 22}\n    b:\n")
    err = refused(write(tmp_path / "x.yml", text))
    assert err.message.startswith(f"{tmp_path / 'x.yml'} line 3, group 'all': ssh args set "
                                  "port 2222 but ansible_port is 22")
    assert "host 'a'" in err.message


def test_every_extra_known_hosts_file_is_kept(tmp_path: Path) -> None:
    """opskit_known_hosts and -o UserKnownHostsFile are both read (transport/connection.py
    passes known_hosts_files), the first one first."""
    text = ("all:\n  vars:\n    opskit_known_hosts: /a\n"
            "    ansible_ssh_common_args: -o UserKnownHostsFile=/b\n  hosts: {h: }\n")
    host = inventory.load(write(tmp_path / "x.yml", text)).hosts["h"]
    assert host.known_hosts_files == ["/a", "/b"]


# --------------------------------------------------------------------------- INI


def test_ini_values_are_read_as_ansible_reads_them(tmp_path: Path) -> None:
    path = write(tmp_path / "hosts.ini", """\
[web]
app[1:2] n=5 f=1.5 b=True s=yes none=None l="[1, 'x']" q='a b' path=/srv/app # comment
[web:vars]
d = {'k': [1, 2]}
t = (1, 2)
e = ...
c = 1j
word = hello world
""")
    host = inventory.load(path).hosts["app2"]
    assert host.vars == {"n": 5, "f": 1.5, "b": True, "s": "yes", "none": None,
                         "l": [1, "x"], "q": "a b", "path": "/srv/app",
                         "d": {"k": [1, 2]}, "t": [1, 2], "e": "...", "c": "1j",
                         "word": "hello world"}
    assert host.origins["d"].line == 4 and host.origins["n"].line == 2


@pytest.mark.parametrize(("text", "line", "says"), [
    ("[web]\napp1\n[web:bogus]\n", 3, "unknown type 'bogus'"),
    ("[web]\n[ db ]\n", 2, "invalid section '[ db ]'"),
    ("[web]\napp1 color\n", 2, "expected name=value after host 'app1', got 'color'"),
    ("[web]\napp1 x='open\n", 2, "cannot split the host line"),
    ("[web:vars]\nx=1\n", 1, "section [web:vars] is for group 'web', which is not declared"),
    ("[all:children]\nweb\n", 2, "[all:children] names group 'web', which is not declared"),
    ("[web]\napp1:\n", 2, "invalid host pattern 'app1:'"),
    ("[web]\n---\n", 2, "invalid host pattern '---'"),
    ("[web]\napp[5:1]\n", 2, "bad host range"),
    ("[web:vars]\nnovalue\n[web]\n", 2, "expected name=value in [web:vars]"),
    ("[web]\na x=\"{[1]: 2}\"\n", 2, "cannot be read"),
    ("[web]\na x={[1]: 2}\n", 2, "expected name=value after host 'a', got '2}'"),
    ("[web]\napp1 ansible_become=yes\n", 2, "ansible_become of host 'app1' is not supported"),
    ("[web:vars]\nurl={{ x }}\n[web]\n", 2, "url of group 'web' is a Jinja template"),
    ("[a:children]\nb\n[b:children]\na\n", 4, "group cycle"),
])
def test_hostile_and_broken_ini_lines_are_one_line_errors(tmp_path: Path, text: str,
                                                          line: int, says: str) -> None:
    err = refused(write(tmp_path / "hosts.ini", text))
    assert err.message.startswith(f"{tmp_path / 'hosts.ini'} line {line}: "), err.message
    assert says in err.message


def test_deeply_nested_ini_value_stays_text(tmp_path: Path) -> None:
    # Python's parser refuses 200+ nested brackets (SyntaxError): Ansible keeps the text.
    deep = "[" * 5000 + "]" * 5000
    inv = inventory.load(write(tmp_path / "hosts.ini", f"[web]\na x={deep}\n"))
    assert inv.hosts["a"].vars["x"] == deep


def test_ini_children_declared_later_and_host_port(tmp_path: Path) -> None:
    inv = inventory.load(write(tmp_path / "inv", """\
[prod:children]
web
[web]
app1:2222
app1 color=red
[web:vars]
ansible_port=22
"""))
    assert inv.groups["prod"].children == ["web"]
    host = inv.hosts["app1"]
    assert (host.port, host.vars["color"], host.groups) == (2222, "red", ("all", "prod", "web"))


def test_non_utf8_only_in_comments(tmp_path: Path) -> None:
    path = tmp_path / "hosts.ini"
    path.write_bytes(b"# caf\xe9\n[web]\napp1\n")
    assert list(inventory.load(path).hosts) == ["app1"]
    path.write_bytes(b"[web]\napp\xe9\n")
    assert refused(path).message.startswith(f"{path} line 2: not UTF-8")


def test_a_file_without_extension_is_yaml_when_it_is_a_yaml_mapping(tmp_path: Path) -> None:
    assert list(inventory.load(write(tmp_path / "a", "web:\n  hosts: {w1: }\n")).hosts) == \
        ["w1"]
    assert list(inventory.load(write(tmp_path / "b", "w1\nw2 x=1\n")).hosts) == ["w1", "w2"]


def test_directory_reads_ini_json_and_yaml_and_skips_ansible_ignored(tmp_path: Path) -> None:
    write(tmp_path / "10-static.ini", "[web]\napp1\n")
    write(tmp_path / "20-more.yml", "db:\n  hosts: {db1: }\n")
    write(tmp_path / "30-list.json", json.dumps({"cache": {"hosts": ["mc1"]}}))
    for ignored in ("README.md", "notes.txt", "x.retry", "ansible.cfg", "old.bak",
                    "hosts.orig", "ec2.example.yml", ".hidden"):
        write(tmp_path / ignored, "not: [an inventory")
    inv = inventory.load(tmp_path)
    assert list(inv.hosts) == ["app1", "db1", "mc1"]


def test_toml_is_refused(tmp_path: Path) -> None:
    assert "TOML" in refused(write(tmp_path / "x.toml", "[web]\n")).message


# --------------------------------------------------------------------------- --list JSON


def test_list_json_with_a_host_in_no_group_is_refused(tmp_path: Path) -> None:
    data = {"_meta": {"hostvars": {"ghost": {"a": 1}}}, "web": {"hosts": ["w1"]}}
    err = refused(write(tmp_path / "x.json", json.dumps(data, indent=1)))
    assert "host 'ghost' has vars in _meta.hostvars but is in no group" in err.message


def test_list_json_vars_are_checked(tmp_path: Path) -> None:
    data = {"_meta": {"hostvars": {"w1": {"ansible_become": True}}}, "web": {"hosts": ["w1"]}}
    err = refused(write(tmp_path / "x.json", json.dumps(data, indent=1)))
    assert err.message == f"{tmp_path / 'x.json'} line 5: ansible_become of host 'w1' is not " \
        "supported by opskit"


# --------------------------------------------------------------------------- scripts


def script(tmp_path: Path, body: str) -> Path:
    return write(tmp_path / "inv.sh", f"#!/bin/sh\n{body}\n", 0o755)


def test_a_failing_script_names_itself_and_its_last_stderr_line(tmp_path: Path) -> None:
    path = script(tmp_path, "echo starting >&2\necho 'boto: no credentials' >&2\nexit 3")
    err = refused(path)
    assert err.message == f"{path} --list exited with status 3; it said: boto: no credentials"


def test_a_script_printing_bad_json_is_refused(tmp_path: Path) -> None:
    err = refused(script(tmp_path, "echo '{not json'\necho oops >&2"))
    assert "--list printed invalid JSON" in err.message and "it said: oops" in err.message


def test_a_hanging_script_times_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(json_source, "SCRIPT_TIMEOUT", 0.5)
    # The grandchild sleeping with the pipes open is killed too (own session).
    err = refused(script(tmp_path, "sleep 30 &\nsleep 30"))
    assert err.message == f"{tmp_path / 'inv.sh'} --list did not finish within 0.5 s"


def test_a_script_template_value_is_refused(tmp_path: Path) -> None:
    data = {"_meta": {"hostvars": {}}, "web": {"hosts": ["w1"], "vars": {"u": "{{ x }}"}}}
    err = refused(script(tmp_path, f"echo '{json.dumps(data)}'"))
    assert err.message.startswith(f"{tmp_path / 'inv.sh'} --list: u of group 'web' is a Jinja")


def test_an_executable_file_without_shebang_is_read_by_extension(tmp_path: Path) -> None:
    path = write(tmp_path / "site.yml", "web:\n  hosts: {w1: }\n", 0o755)
    assert list(inventory.load(path).hosts) == ["w1"]


def test_a_malformed_ini_line_that_may_hold_a_secret_is_not_echoed(tmp_path: Path) -> None:
    for text in ("[all:vars]\ndb_password {{hunter2}}\n", "[web]\nw1 api_token:hunter2\n"):
        err = refused(write(tmp_path / "x.ini", text))
        assert "hunter2" not in err.message + str(err.hint), err.message
        assert "line 2" in err.message and "not shown" in err.message
