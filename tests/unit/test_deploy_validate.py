"""What the deploy accepts from hosts, inventories and artifacts (opskit/deploy/validate.py,
the pid and listing parts of steps.py, onhost/release_setup.py), tried with hostile input."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import pytest

from opskit.deploy import config, steps, validate
from opskit.deploy.artifact import release_id
from opskit.errors import InventoryError, UsageError
from opskit.inventory import Host
from opskit.onhost import script

POISON = "20260101-z';touch${IFS}PWNED;'"


def test_release_ids_opskit_makes_are_valid() -> None:
    now = datetime(2026, 11, 24, 3, 45, 12, 123456, tzinfo=timezone.utc)
    assert release_id("3f2a9c1d" * 5, now) == "20261124034512123-3f2a9c1"
    for revision in ("3f2a9c1d" * 5, "0123456789ab"):  # a git sha, a tarball digest prefix
        assert validate.is_release_id(release_id(revision))


@pytest.mark.parametrize("name", [
    POISON, "../../etc", "..", ".", "", "20261124034512123-3F2A9C1", "20261124034512123-3f2a9c",
    "20261124034512123-3f2a9c1 ", "20261124034512123-3f2a9c1\n", "x20261124034512123-3f2a9c1",
    "20261124034512123-3f2a9c1/..", "２0261124034512123-3f2a9c1", "-rf",
])
def test_anything_else_is_not_a_release(name: str) -> None:
    assert not validate.is_release_id(name)
    with pytest.raises(UsageError) as exc:
        validate.check_release_id(name)
    assert exc.value.hint and "20261124034512123" in exc.value.hint


@pytest.mark.parametrize("text,want", [
    ("4242", 4242), ("2", 2), ("-1", None), ("0", None), ("1", None), ("abc", None),
    ("", None), ("01", None), (" 42", None), ("42 43", None), ("٤٢", None), ("+5", None),
])
def test_pid(text: str, want: int | None) -> None:
    assert validate.pid(text) == want


@pytest.mark.parametrize("word", ["app07", "web-1.example.com", "127.10.0.1", "fe80::1",
                                  "ip-10-0-0-1.ec2.internal", "web_1"])
def test_host_words(word: str) -> None:
    assert validate.is_host_word(word)


@pytest.mark.parametrize("word", ["web1;touch${IFS}PWNED;#", "-rf", "a b", "a'b", "", "x@evil",
                                  "a/b", "$(id)", "`id`", "a\nb", "web1#", "a" * 254])
def test_hostile_host_words(word: str) -> None:
    assert not validate.is_host_word(word)


@pytest.mark.parametrize("path,ok", [
    ("log", True), ("tmp/pids", True), ("./log", True), ("a/b/", True), ("..foo", True),
    ("", False), (".", False), ("/etc", False), ("../x", False), ("a/../b", False),
    ("a/..", False), ("a\0b", False),
])
def test_inside_paths(path: str, ok: bool) -> None:
    assert validate.is_inside_path(path) is ok


def host(name: str, address: str = "127.10.0.1", **deploy: object) -> Host:
    return Host(name, vars={"ansible_host": address,
                            "deploy": {"root": "/srv/app", "reload": "true", **deploy}})


def test_templates_fill_quoted_host_words() -> None:
    cfg = config.load(host("app07", start="run --name {name} --bind {address}:8000",
                           install="echo {name}", reload="reload {address}",
                           health_url="http://{address}:8000/health"))
    assert cfg.start == "run --name app07 --bind 127.10.0.1:8000"
    assert cfg.install == "echo app07" and cfg.reload_command == "reload 127.10.0.1"
    assert cfg.health_url == "http://127.10.0.1:8000/health"


@pytest.mark.parametrize("key", ["start", "install", "reload", "health_url"])
def test_hostile_name_in_a_template_is_a_config_error(key: str) -> None:
    evil = "web1;touch${IFS}PWNED;#"
    template = "http://{name}:8000/health" if key == "health_url" else "x {name}"
    with pytest.raises(InventoryError) as exc:
        config.load(host(evil, **{key: template}))
    msg = exc.value.message
    assert repr(evil) in msg and f"deploy.{key}" in msg and "\n" not in msg


def test_hostile_address_in_a_template_is_a_config_error() -> None:
    with pytest.raises(InventoryError, match="deploy.start"):
        config.load(host("app1", address="$(reboot)", start="x {address}"))


def test_hostile_name_without_placeholders_is_fine() -> None:
    assert config.load(host("web 1;x", start="systemctl start app")).start == \
        "systemctl start app"


@pytest.mark.parametrize("bad", ["../x", "a/../../b", "/etc", ".", ""])
def test_shared_dirs_must_stay_inside(bad: str) -> None:
    with pytest.raises(InventoryError) as exc:
        config.load(host("app3", shared_dirs=["log", bad]))
    assert "app3" in exc.value.message and "deploy.shared_dirs" in exc.value.message


def test_release_dir_refuses_a_non_release() -> None:
    cfg = config.load(host("app1"))
    with pytest.raises(UsageError):
        cfg.release_dir("../../etc")


CFG = config.load(host("app1"))
R1, R2 = "20261124034512123-3f2a9c1", "20261125034512123-0a1b2c3"


def listing(current: str, *names: str) -> str:
    return current + "\0" + "".join(n + "\0" for n in names)


def test_listing_ignores_what_is_not_ours() -> None:
    st = steps._parse_releases(listing(f"/srv/app/releases/{R2}", R2, POISON, "x\n" + R1, R1,
                                       "notes.txt"), CFG)
    assert (st.current, st.releases, st.previous) == (R2, [R1, R2], R1)
    assert sorted(st.ignored) == sorted([POISON, "x\n" + R1, "notes.txt"])
    warnings = st.warnings(CFG)
    assert len(warnings) == 3 and all("\n" not in w for w in warnings)
    assert any(repr(POISON) in w for w in warnings)


@pytest.mark.parametrize("link", [f"/etc/{R1}", "/srv/app/releases/" + POISON, "../../etc",
                                  f"/srv/app/releases/{R1}/../../../etc"])
def test_current_pointing_elsewhere_is_not_a_release(link: str) -> None:
    st = steps._parse_releases(listing(link, R1), CFG)
    assert st.current is None and st.previous is None and st.foreign_current == link
    assert "current" in st.warnings(CFG)[0]


def test_listing_shell_is_nul_separated(tmp_path: Path) -> None:
    root = tmp_path / "app"
    (root / "releases").mkdir(parents=True)
    for name in (R1, POISON, "a\nb", ".hidden"):
        (root / "releases" / name).mkdir()
    os.symlink(root / "releases" / R1, root / "current")
    cfg = config.load(Host("h", vars={"deploy": {"root": str(root), "reload": "true"}}))
    out = subprocess.run(["sh", "-c", steps._list_releases_sh(cfg)], capture_output=True,
                         text=True, check=True).stdout
    st = steps._parse_releases(out, cfg)
    assert st.current == R1 and st.releases == [R1]
    assert sorted(st.ignored) == sorted([POISON, "a\nb"])


def run_pid_sh(pid_file: Path) -> tuple[int, str, list[str]]:
    """The reload's pid lines with ``kill`` replaced by a function that only logs (a sh
    function wins over the builtin): a bug here cannot signal anything."""
    log = pid_file.parent / "kills"
    log.write_text("")
    script_ = (f'kill() {{ echo "$*" >> {log}; }}\n'
               + steps._read_pid_sh(str(pid_file))
               + '\n[ -z "$pid" ] || kill -HUP "$pid" || exit\necho "master=$pid"')
    proc = subprocess.run(["sh", "-c", script_], capture_output=True, text=True)
    return proc.returncode, proc.stdout, log.read_text().splitlines()


@pytest.mark.parametrize("content", ["-1", "0", "1", "abc", "01", "-1\n", "42 43", "$(id)",
                                     "4242\n-1"])
def test_a_bad_pid_file_sends_no_signal(tmp_path: Path, content: str) -> None:
    pf = tmp_path / "app.pid"
    pf.write_text(content)
    code, out, kills = run_pid_sh(pf)
    assert code == steps._BAD_PID and kills == []
    assert out.startswith(steps._BAD_PID_WORD)


def test_a_good_pid_file_is_hupped(tmp_path: Path) -> None:
    pf = tmp_path / "app.pid"
    pf.write_text("4242\n")
    code, out, kills = run_pid_sh(pf)
    assert code == 0 and kills == ["-0 4242", "-HUP 4242"] and "master=4242" in out


@pytest.mark.parametrize("content", [None, ""])
def test_no_pid_file_means_no_master(tmp_path: Path, content: str | None) -> None:
    pf = tmp_path / "app.pid"
    if content is not None:
        pf.write_text(content)
    code, out, kills = run_pid_sh(pf)
    assert code == 0 and kills == [] and out.split() == ["master="]


# -- onhost/release_setup.py ----------------------------------------------------------------


def setup_release(tmp_path: Path, shared_dirs: Sequence[str] = (),
                  shared_files: Sequence[str] = ()) -> tuple[int, str, Path]:
    rel = tmp_path / "releases" / R1
    shared = tmp_path / "shared"
    doc = {"dir": str(rel), "files": {"RELEASE": R1 + "\n", "REVISION": "abc\n"},
           "shared_dirs": [[str(shared / d), d] for d in shared_dirs],
           "shared_files": [[str(shared / f), f] for f in shared_files]}
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", script("release_setup"),
                           json.dumps(doc)], capture_output=True, text=True)
    assert proc.stdout == ""
    return proc.returncode, proc.stderr, rel


@pytest.fixture()
def rel(tmp_path: Path) -> Path:
    r = tmp_path / "releases" / R1
    r.mkdir(parents=True)
    (r / "app.py").write_text("app\n")
    return r


@pytest.fixture()
def victim(tmp_path: Path) -> Path:
    v = tmp_path / "outside" / "victim"
    v.parent.mkdir()
    v.write_text("precious\n")
    return v


def test_a_plain_release_is_finished(tmp_path: Path, rel: Path) -> None:
    (rel / "assets").mkdir()
    (rel / "static").symlink_to("assets")  # a link inside the release is fine
    (rel / "log").mkdir()
    (rel / "log" / ".keep").write_text("")
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "settings.py").write_text("S = 1\n")
    code, err, _ = setup_release(tmp_path, ["log", "tmp/pids"], ["settings.py"])
    assert code == 0, err
    assert (rel / "RELEASE").read_text() == R1 + "\n"
    assert (rel / "REVISION").read_text() == "abc\n"
    assert os.readlink(rel / "log") == str(tmp_path / "shared" / "log")
    assert os.readlink(rel / "tmp" / "pids") == str(tmp_path / "shared" / "tmp" / "pids")
    assert (tmp_path / "shared" / "tmp" / "pids").is_dir()
    assert os.readlink(rel / "settings.py") == str(tmp_path / "shared" / "settings.py")


def test_release_symlink_to_a_file_outside_is_refused(tmp_path: Path, rel: Path,
                                                      victim: Path) -> None:
    (rel / "RELEASE").symlink_to(victim)
    code, err, _ = setup_release(tmp_path)
    assert code == 67 and "'RELEASE'" in err and "outside the release" in err
    assert victim.read_text() == "precious\n"


def test_relative_escape_is_refused(tmp_path: Path, rel: Path, victim: Path) -> None:
    (rel / "deep").mkdir()
    (rel / "deep" / "up").symlink_to("../../../outside")
    code, err, _ = setup_release(tmp_path)
    assert code == 67 and "deep/up" in err


def test_a_release_file_linked_inside_is_replaced_not_followed(tmp_path: Path,
                                                               rel: Path) -> None:
    (rel / "RELEASE").symlink_to("app.py")
    (rel / "REVISION").hardlink_to(rel / "app.py")
    code, err, _ = setup_release(tmp_path)
    assert code == 0, err
    assert (rel / "app.py").read_text() == "app\n"
    assert not (rel / "RELEASE").is_symlink() and (rel / "RELEASE").read_text() == R1 + "\n"


def test_shared_dir_through_a_symlink_is_refused(tmp_path: Path, rel: Path) -> None:
    (rel / "sub" / "pids").mkdir(parents=True)
    (rel / "sub" / "pids" / "keep").write_text("k")
    (rel / "tmp").symlink_to("sub")  # resolves inside: only the linking step can catch it
    code, err, _ = setup_release(tmp_path, ["tmp/pids"])
    assert code == 67 and "'tmp'" in err
    assert (rel / "sub" / "pids" / "keep").read_text() == "k"


def test_shared_dir_through_a_symlink_outside_is_refused(tmp_path: Path, rel: Path,
                                                         victim: Path) -> None:
    (victim.parent / "pids").mkdir()
    (rel / "tmp").symlink_to(victim.parent)
    code, err, _ = setup_release(tmp_path, ["tmp/pids"])
    assert code == 67 and (victim.parent / "pids").is_dir() and victim.exists()


def test_escape_once_shared_paths_are_linked_is_refused(tmp_path: Path, rel: Path) -> None:
    (rel / "x").symlink_to("log/../app.py")  # inside now; shared/app.py once log is linked
    code, err, _ = setup_release(tmp_path, ["log"])
    assert code == 67 and "once the shared paths are linked" in err


def test_fifo_and_setuid_are_refused(tmp_path: Path, rel: Path) -> None:
    os.mkfifo(rel / "pipe")
    (rel / "su").write_text("#!/bin/sh\n")
    (rel / "su").chmod(0o4755)
    (rel / "grp").mkdir()
    (rel / "grp").chmod(0o2755)
    code, err, _ = setup_release(tmp_path)
    assert code == 67
    assert "'pipe': FIFO" in err and "'su': setuid" in err and "'grp': setuid" in err


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_device_files_are_refused(tmp_path: Path, rel: Path) -> None:
    os.mknod(rel / "null", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    code, err, _ = setup_release(tmp_path)
    assert code == 67 and "'null': device file" in err


def test_missing_shared_file(tmp_path: Path, rel: Path) -> None:
    code, err, _ = setup_release(tmp_path, shared_files=["settings.py"])
    assert code == 3 and "missing shared file" in err


class LoggingKillSession:
    """A Session stand-in that runs commands locally with ``kill`` replaced by a logger."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.host = Host("app1")

    def run(self, command: str, *, check: bool = True, env: dict[str, str] | None = None,
            **_kw: object) -> subprocess.CompletedProcess[str]:
        prefix = f'kill() {{ echo "$*" >> {self.log}; }}\n'
        proc = subprocess.run(["sh", "-c", prefix + command], capture_output=True, text=True,
                              env={**os.environ, **(env or {})})
        proc.exit_status = proc.returncode  # type: ignore[attr-defined]
        return proc

    def run_argv(self, argv: list[str], **kw: object) -> None:
        with self.log.open("a") as fh:
            fh.write(" ".join(argv) + "\n")


@pytest.mark.parametrize("reload", ["hup", "usr2"])
@pytest.mark.parametrize("content", ["-1", "0", "1", "abc"])
def test_activate_with_a_bad_pid_file_fails_before_any_kill(tmp_path: Path, reload: str,
                                                            content: str) -> None:
    root = tmp_path / "app"
    (root / "releases" / R1).mkdir(parents=True)
    pf = tmp_path / "app.pid"
    pf.write_text(content + "\n")
    cfg = config.load(Host("app1", vars={"deploy": {"root": str(root), "reload": reload,
                                                    "pid_file": str(pf), "start": "true"}}))
    log = tmp_path / "kills"
    log.write_text("")
    with pytest.raises(steps.CommandFailed) as exc:
        steps.activate(LoggingKillSession(log), cfg, R1)  # type: ignore[arg-type]
    assert log.read_text() == ""
    assert isinstance(exc.value, steps.NotSwitched)
    assert str(exc.value) == (f"pid file {pf} holds {content!r}, not a process id > 1: no "
                              f"signal sent, {root / 'current'} not switched")
    assert not (root / "current").exists()
