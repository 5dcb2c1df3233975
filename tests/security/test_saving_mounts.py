"""Issue 22, item 7: saving into a folder that cannot be renamed (a mount point; EPERM/EROFS/EBUSY/EXDEV).

A real bind mount where this machine lets an unprivileged user namespace make one
(`unshare -rm`), a simulated one (os.rename refusing the folder) everywhere. Before the
in-place switch of `hf_clipadapt.io`, every such save failed and left a folder that no
loader could open.
"""

import errno
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

import hf_clipadapt.io as io
from hf_clipadapt.checkpoints import check_pretrained_path
from hf_clipadapt.io import MANIFEST_NAME, recover_directory, write_directory_atomic


def _snapshot(folder):
    """What a loader reads: the folder's files, less the manifest and a save's own work folders."""
    files = {
        p.relative_to(folder).as_posix(): p.read_text()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.relative_to(folder).as_posix().startswith(".hf_clipadapt-")
    }
    files.pop(MANIFEST_NAME, None)
    return files


def _write(version):
    def write(d):
        (d / "config.json").write_text(version)
        (d / "model.safetensors").write_text(version)
        if version == "old":
            (d / "model-00002.safetensors").write_text(version)  # a shard the new save no longer writes

    return write


OLD = {"config.json": "old", "model.safetensors": "old", "model-00002.safetensors": "old", "results.json": "user"}
NEW = {"config.json": "new", "model.safetensors": "new", "results.json": "user"}


@pytest.fixture
def unrenamable(monkeypatch):
    """Make os.rename refuse to move the folders added to the returned set (as for a mount point)."""
    pinned, rename = set(), os.rename

    def refusing(src, dst, *args, **kwargs):
        if os.path.abspath(src) in pinned:
            raise OSError(errno.EBUSY, "Device or resource busy", str(src))
        return rename(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "rename", refusing)
    return pinned


def test_saving_into_a_folder_that_cannot_be_renamed_replaces_its_contents(tmp_path, unrenamable):
    target = tmp_path / "mnt"
    write_directory_atomic(target, _write("old"))
    (target / "results.json").write_text("user")
    unrenamable.add(str(target))
    write_directory_atomic(target, _write("new"))
    assert _snapshot(target) == NEW
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mnt"] and not any(
        p.name.startswith(".hf_clipadapt-") for p in target.iterdir()
    )
    assert check_pretrained_path(str(target)) == str(target) and _snapshot(target) == NEW


def test_a_model_saves_and_loads_in_a_folder_that_cannot_be_renamed(tmp_path, unrenamable):
    from hf_clipadapt.testing_utils import tiny_carded_model_class

    Tiny = tiny_carded_model_class("hf_clipadapt_mount_tiny")
    TinyConfig = Tiny.config_class

    target = tmp_path / "mnt"
    target.mkdir()
    unrenamable.add(str(target))
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = Tiny(TinyConfig())
        model.save_pretrained(target)
    check_pretrained_path(str(target))
    assert torch.equal(Tiny.from_pretrained(target).linear.weight, model.linear.weight)


@pytest.mark.parametrize(
    ("mount_point", "crash_at"), [(False, k) for k in (1, 2, 11, 12, 13)] + [(True, k) for k in (11, 12, 13)]
)
def test_an_interrupted_in_place_save_recovers_to_the_whole_old_or_new_save(
    tmp_path, unrenamable, monkeypatch, crash_at, mount_point
):
    """Crash points: 1 new save written beside the folder, 2 renamed complete (rename path,
    before it fails on the folder); 11 staged inside the folder, 12 journal written, 13 the
    first file switched (in place). A loader sees a whole save at every point; the next
    save's recovery finishes any complete one."""
    target = tmp_path / "mnt"
    write_directory_atomic(target, _write("old"))
    (target / "results.json").write_text("user")
    unrenamable.add(str(target))
    if mount_point:  # detected up front: written in place directly, no sibling folder (no steps 1, 2)
        is_mount = os.path.ismount
        monkeypatch.setattr(os.path, "ismount", lambda p: os.path.abspath(p) == str(target) or is_mount(p))

    def crash(k):
        if k == crash_at:
            raise KeyboardInterrupt  # the writer dies here

    io._step_hook = crash
    try:
        with pytest.raises(KeyboardInterrupt):
            write_directory_atomic(target, _write("new"))
    finally:
        io._step_hook = None
    check_pretrained_path(str(target))  # what every loader does first
    assert _snapshot(target) == (NEW if crash_at in (12, 13) else OLD)
    recover_directory(target)  # what the next save does first
    finished = OLD if crash_at == 1 or (mount_point and crash_at == 11) else NEW
    assert _snapshot(target) == finished
    assert sorted(p.name for p in target.iterdir()) == sorted([*finished, MANIFEST_NAME])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mnt"]


def test_a_save_stopped_at_the_folder_rename_leaves_a_loadable_folder(tmp_path, unrenamable):
    """The state the old code left behind on a mount point: the new save complete in the sibling
    `<dir>.hf_clipadapt-ready`, the old one in `<dir>`. Loaders read the old one; the next
    recovery (or save) switches to the new one in place."""
    target = tmp_path / "mnt"
    write_directory_atomic(target, _write("old"))
    ready = tmp_path / "mnt.hf_clipadapt-ready"
    write_directory_atomic(ready, _write("new"))
    unrenamable.add(str(target))
    saved = {name: version for name, version in OLD.items() if name != "results.json"}
    assert check_pretrained_path(str(target)) == str(target) and _snapshot(target) == saved
    recover_directory(target)
    assert _snapshot(target) == {name: version for name, version in NEW.items() if name != "results.json"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mnt"]


_IN_MOUNT = """
import importlib.util, json, os, subprocess, sys
from pathlib import Path

spec = importlib.util.spec_from_file_location("hf_io", sys.argv[1])
io = importlib.util.module_from_spec(spec)
spec.loader.exec_module(io)  # the module alone (stdlib only): a fast subprocess
src, mnt, action, kill_at = Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4], int(sys.argv[5])
subprocess.run(["mount", "--bind", str(src), str(mnt)], check=True)
assert f" {mnt} " in Path("/proc/self/mounts").read_text()  # (os.path.ismount misses a same-device bind mount)


def write(version):
    def write(d):
        (d / "config.json").write_text(version)
        (d / "model.safetensors").write_text(version)
    return write


if action == "recover":
    io.recover_directory(mnt)
else:
    io._step_hook = lambda k: os._exit(17) if k == kill_at else None
    io.write_directory_atomic(mnt, write(action))
"""


def _in_mount(src, mnt, action, kill_at=0):
    command = [
        "unshare",
        "-rm",
        sys.executable,
        "-c",
        _IN_MOUNT,
        io.__file__,
        str(src),
        str(mnt),
        action,
        str(kill_at),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def _can_bind_mount(tmp_path) -> bool:
    if shutil.which("unshare") is None:
        return False
    (tmp_path / "probe_a").mkdir()
    (tmp_path / "probe_b").mkdir()
    probe = subprocess.run(
        ["unshare", "-rm", "mount", "--bind", str(tmp_path / "probe_a"), str(tmp_path / "probe_b")],
        capture_output=True,
    )
    return probe.returncode == 0


@pytest.mark.parametrize("kill_at", [0, 1, 11, 13])
def test_saving_into_a_real_bind_mount(tmp_path, kill_at):
    if not _can_bind_mount(tmp_path):
        pytest.skip("this machine lets no user namespace bind-mount; the simulated tests above cover the logic")
    src, mnt = tmp_path / "src", tmp_path / "mnt"
    src.mkdir()
    mnt.mkdir()
    first = _in_mount(src, mnt, "old")
    assert first.returncode == 0, first.stderr
    (src / "results.json").write_text("user")
    second = _in_mount(src, mnt, "new", kill_at)
    assert second.returncode == (17 if kill_at else 0), second.stderr
    recovered = _in_mount(src, mnt, "recover")
    assert recovered.returncode == 0, recovered.stderr
    new = {"config.json": "new", "model.safetensors": "new", "results.json": "user"}
    old = {"config.json": "old", "model.safetensors": "old", "results.json": "user"}
    assert _snapshot(src) == (old if kill_at == 1 else new)
    assert json.loads((src / MANIFEST_NAME).read_text())["files"] == ["config.json", "model.safetensors"]
