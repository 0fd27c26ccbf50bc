"""Every file ssd writes (metrics, snapshots, per-node snapshots): a new file beside the target,
then renamed over it; a target that is not a regular file (a device, a FIFO, a directory, a
link, a dangling link) is refused with one line before the check runs, and left as it was.
ssd runs as root: these are what a link in a directory another user can write would turn."""
from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

import ssd.base
import ssd.cli
import ssd.output
import ssd.snapshot
import ssd.swarmwide.fleet
from helpers import EXAMPLES, one_line, run_ssd

EXAMPLE = str(EXAMPLES / "healthy-node1.json")


def metrics(target, *more: str) -> subprocess.CompletedProcess:
    return run_ssd("--from", EXAMPLE, "-q", "--prometheus", str(target), *more, timeout=30)


def test_a_regular_target_is_replaced_whole_and_readable_by_node_exporter(tmp_path):
    target = tmp_path / "ssd.prom"
    target.write_text("old\n" * 10000)
    before = target.stat().st_ino
    proc = subprocess.run([sys.executable, "-c", "import os, sys, runpy; os.umask(0o077); "
                           f"sys.argv = ['ssd', '--from', {EXAMPLE!r}, '-q', '--prometheus', {str(target)!r}]; "
                           "runpy.run_module('ssd', run_name='__main__')"],
                          cwd=EXAMPLES.parent, capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    assert target.stat().st_ino != before  # renamed into place, not rewritten in place
    assert "old" not in target.read_text() and 'ssd_status{ssd_status="consistent"} 1.0' in target.read_text()
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # whatever the umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ssd.prom"]  # no temporary left


def test_a_device_is_refused_and_left_a_device(tmp_path):
    device = tmp_path / "null"
    os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # a /dev/null of our own
    line = one_line(metrics(device))
    assert "refusing to write metrics" in line and "character device" in line
    assert stat.S_ISCHR(device.lstat().st_mode)


def test_a_fifo_is_refused_without_waiting_for_a_reader(tmp_path):
    fifo = tmp_path / "ssd.prom"
    os.mkfifo(fifo)
    assert "a FIFO" in one_line(metrics(fifo))
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


@pytest.mark.parametrize("exists", [True, False], ids=["link", "dangling-link"])
def test_a_link_is_refused_and_nothing_is_written_where_it_points(tmp_path, exists):
    pointee = tmp_path / "nologin"
    if exists:
        pointee.write_text("kept\n")
    link = tmp_path / "ssd.prom"
    link.symlink_to(pointee)
    assert "a symbolic link" in one_line(metrics(link))
    assert link.is_symlink() and os.readlink(link) == str(pointee)
    assert (pointee.read_text() == "kept\n") if exists else not pointee.exists()


def test_a_directory_is_refused(tmp_path):
    assert "a directory" in one_line(metrics(tmp_path))


@pytest.mark.parametrize("where", ["a-file/ssd.prom", "/proc/ssd-test.prom"])
def test_an_unwritable_place_is_one_line(tmp_path, where):
    (tmp_path / "a-file").write_text("")
    line = one_line(metrics(tmp_path / where))
    assert line.startswith("ssd: error: cannot write metrics"), line


def test_a_snapshot_is_its_owners_only_and_renamed_into_place(tmp_path):
    target = tmp_path / "node.json"
    target.write_text("{}")
    os.chmod(target, 0o644)
    before = target.stat().st_ino
    ssd.snapshot.write_snapshot({"format": "ssd-snapshot"}, str(target))
    assert stat.S_IMODE(target.stat().st_mode) == 0o600 and target.stat().st_ino != before
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(ssd.base.CheckError, match="symbolic link"):
        ssd.snapshot.write_snapshot({}, str(link))
    assert not (tmp_path / "elsewhere.json").exists()


def test_a_planted_temporary_name_is_not_written_through(tmp_path, monkeypatch):
    """The new file is made O_EXCL | O_NOFOLLOW: a link planted at its name is skipped, not
    followed."""
    names = iter(["aaaaaaaa", "bbbbbbbb"])
    monkeypatch.setattr(ssd.output.secrets, "token_hex", lambda n: next(names))
    planted = tmp_path / f".ssd.prom.ssd-{os.getpid()}-aaaaaaaa"
    planted.symlink_to(tmp_path / "victim")
    ssd.output.write_file(str(tmp_path / "ssd.prom"), b"x\n", 0o644, "metrics")
    assert (tmp_path / "ssd.prom").read_bytes() == b"x\n" and not (tmp_path / "victim").exists()


def test_two_nodes_never_write_the_same_snapshot_file():
    names = ["web/1", "web_1", "web_1", ".."]
    ids = ["aaaa1111", "bbbb2222", "bbbb2222", "cccc3333"]
    taken: set[str] = set()
    for label, node_id in zip(names, ids, strict=True):
        name = next(n for n in ssd.swarmwide.fleet.snapshot_names(label, node_id) if n not in taken)
        assert "/" not in name and not name.startswith(".")
        taken.add(name)
    assert len(taken) == 4
