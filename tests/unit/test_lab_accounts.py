"""The lab's own account files (lab/accounts.py): pure text, no machine /etc is touched."""

from __future__ import annotations

import pathlib

from opskit.lab import accounts
from opskit.lab.inventory_file import dev_path, ops_path

MACHINE_PASSWD = "root:x:0:0:root:/root:/bin/bash\nops:x:1000:1000::/home/ops:/bin/sh\n" \
                 "u:x:2722:2722::/:/bin/sh\n"
MACHINE_GROUP = "root:x:0:\nops:x:1000:\n"


def test_ids_skip_what_the_machine_uses(tmp_path: pathlib.Path) -> None:
    (tmp_path / "passwd").write_text(MACHINE_PASSWD)
    (tmp_path / "group").write_text(MACHINE_GROUP + "g:x:2724:\n")
    assert accounts.ids(tmp_path) == {"ops": 2723, "dev": 2725}


def test_passwd_replaces_a_machine_user_of_the_same_name() -> None:
    text = accounts.passwd_text(MACHINE_PASSWD, {"ops": 2723, "dev": 2725})
    lines = text.splitlines()
    assert lines[0].startswith("root:") and [x.split(":")[0] for x in lines].count("ops") == 1
    # "*": no password and not locked (sshd refuses "!"), and no shadow entry is needed.
    assert "ops:*:2723:2723:opskit lab ops:/etc/opskit-lab/home/ops:/bin/bash" in lines
    assert text.endswith("\n")


def test_group_and_sudoers() -> None:
    text = accounts.group_text(MACHINE_GROUP, {"ops": 2723, "dev": 2725})
    assert text.splitlines()[-2:] == ["ops:x:2723:", "dev:x:2725:"]
    assert "ops ALL=(ALL:ALL) NOPASSWD: ALL" in accounts.SUDOERS
    assert "dev ALL=(ALL:ALL) ALL" in accounts.SUDOERS


def test_mounts_are_idempotent_and_the_match_block_names_both() -> None:
    script = accounts.mount_script(pathlib.Path("/s/hosts/db1"))
    assert script[0] == ("if [ -e /etc/passwd ] && ! [ /etc/passwd -ef /s/hosts/db1/accounts/"
                         "passwd ]; then mount --bind /s/hosts/db1/accounts/passwd /etc/passwd; fi")
    assert accounts.sshd_config_lines()[0] == "Match User ops,dev"


def test_ops_inventory_sits_beside_the_lab_one() -> None:
    assert ops_path(pathlib.Path("/t/lab.yml")) == pathlib.Path("/t/lab-ops.yml")


def test_dev_has_a_kept_password_only_root_can_read(tmp_path: pathlib.Path) -> None:
    import subprocess

    crypt = accounts.dev_password_hash(tmp_path)
    pw_file = accounts.dev_password_path(tmp_path)
    assert pw_file.stat().st_mode & 0o777 == 0o600
    password = pw_file.read_text().removesuffix("\n")
    assert "\n" not in password and " " in password and "'" in password and "$" in password
    # The crypt is of that password (openssl recomputes it with the same salt) ...
    salt = crypt.split("$")[2]
    again = subprocess.run(["openssl", "passwd", "-6", "-salt", salt, "-stdin"],
                           input=password + "\n", capture_output=True, text=True, check=True)
    assert again.stdout.strip() == crypt
    # ... kept by a later `up`, and it is dev's password field (ops keeps "*").
    assert accounts.dev_password_hash(tmp_path) == crypt
    assert pw_file.read_text().removesuffix("\n") == password
    lines = accounts.passwd_text(MACHINE_PASSWD, {"ops": 2723, "dev": 2725}, crypt).splitlines()
    assert f"dev:{crypt}:2725:2725:opskit lab dev:/etc/opskit-lab/home/dev:/bin/bash" in lines
    assert any(x.startswith("ops:*:2723:") for x in lines)
    assert "Defaults use_pty" in accounts.SUDOERS


def test_dev_inventory_sits_beside_the_lab_one() -> None:
    assert dev_path(pathlib.Path("/t/lab.yml")) == pathlib.Path("/t/lab-dev.yml")
