"""Atomic writes: a crash before the rename leaves the previous file intact."""

import os

import pytest

from explorer.schema.files import atomic_replace, atomic_write_text


def test_write_replaces_whole_file(tmp_path):
    target = tmp_path / "f.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]  # no temporary left behind


def test_crash_before_rename_keeps_the_old_file(tmp_path):
    target = tmp_path / "f.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_replace(target) as tmp:
        tmp.write_text("half a new fi")
        raise RuntimeError("power cut")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_new_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "g.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "g.txt").stat().st_mode & 0o777 == 0o644
