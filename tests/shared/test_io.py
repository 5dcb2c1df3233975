import pytest
import torch
from safetensors.torch import load_file

from hf_clipadapt.io import save_safetensors_atomic, write_directory_atomic


def test_failed_directory_write_leaves_old_checkpoint_whole(tmp_path):
    target = tmp_path / "ckpt"
    write_directory_atomic(target, lambda d: (d / "model.bin").write_text("old"))

    def crash(d):
        (d / "model.bin").write_text("half-writ")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_directory_atomic(target, crash)
    assert (target / "model.bin").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"], "no temporary folder may be left behind"


def test_directory_write_replaces_files_and_keeps_subfolders(tmp_path):
    def write(d):
        (d / "a.txt").write_text("new")
        (d / "sub").mkdir()
        (d / "sub" / "b.txt").write_text("b")

    write_directory_atomic(tmp_path / "out", write)
    assert (tmp_path / "out" / "a.txt").read_text() == "new"
    assert (tmp_path / "out" / "sub" / "b.txt").read_text() == "b"


def test_safetensors_atomic_roundtrip_and_no_leftovers(tmp_path):
    path = tmp_path / "x.safetensors"
    save_safetensors_atomic({"t": torch.arange(6).view(2, 3).T}, path, {"k": "v"})  # non-contiguous input
    assert torch.equal(load_file(str(path))["t"], torch.arange(6).view(2, 3).T)
    with pytest.raises(AttributeError):  # a str has no .contiguous()
        save_safetensors_atomic({"t": "not a tensor"}, path)
    assert torch.equal(load_file(str(path))["t"], torch.arange(6).view(2, 3).T)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.safetensors"]


# --- whole-folder switch: kill the writer between two steps, load what is left ---

_KILLED_SAVE = """
import importlib.util, os, sys
from pathlib import Path

spec = importlib.util.spec_from_file_location("hf_io", sys.argv[1])
io = importlib.util.module_from_spec(spec)
spec.loader.exec_module(io)  # the module alone (stdlib only): a fast subprocess
target, version, kill_at = Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])


def write(d):
    (d / "config.json").write_text(version)
    (d / "model.safetensors").write_text(version)
    if version == "old":
        (d / "model-00002.safetensors").write_text(version)  # a shard the new save no longer writes


io._step_hook = lambda k: os._exit(17) if k == kill_at else None
io.write_directory_atomic(target, write)
"""


def _save_in_subprocess(target, version, kill_at=0):
    import subprocess
    import sys

    import hf_clipadapt.io as io

    proc = subprocess.run([sys.executable, "-c", _KILLED_SAVE, io.__file__, str(target), version, str(kill_at)])
    return proc.returncode


def _snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("kill_at", [1, 2, 3, 4, 5])
def test_killed_save_leaves_the_whole_old_or_the_whole_new_folder(tmp_path, kill_at):
    from hf_clipadapt.io import MANIFEST_NAME, recover_directory

    target = tmp_path / "ckpt"
    assert _save_in_subprocess(target, "old") == 0
    (target / "results.json").write_text("user")  # the user's own file, written after the save
    old = _snapshot(target)
    assert _save_in_subprocess(target, "new", kill_at) == 17, "the writer must have been killed"

    recover_directory(target)
    left = _snapshot(target)
    left.pop(MANIFEST_NAME)
    old.pop(MANIFEST_NAME)
    new = {"config.json": "new", "model.safetensors": "new", "results.json": "user"}
    # before the rename to `.hf_clipadapt-ready` the new save is incomplete (rolled back); after it, complete (rolled forward)
    assert left == (old if kill_at == 1 else new)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"], "recovery leaves no sibling behind"


def test_every_state_of_a_save_is_one_of_two_whole_folders(tmp_path):
    """The same, without a subprocess: snapshot what a loader would get at each step."""
    import hf_clipadapt.io as io

    target = tmp_path / "ckpt"
    write_directory_atomic(target, lambda d: (d / "w.txt").write_text("old"))
    seen = []

    def look(k):
        import shutil

        copy = tmp_path / f"copy{k}"
        shutil.copytree(tmp_path, copy, ignore=shutil.ignore_patterns("copy*"))
        io._step_hook = None  # the recovery below takes steps of its own
        try:
            io.recover_directory(copy / "ckpt")
        finally:
            io._step_hook = look
        seen.append((copy / "ckpt" / "w.txt").read_text())
        assert sorted(p.name for p in copy.iterdir()) == ["ckpt"]

    io._step_hook = look
    try:
        write_directory_atomic(target, lambda d: (d / "w.txt").write_text("new"))
    finally:
        io._step_hook = None
    assert seen == ["old", "new", "new", "new", "new"]


def test_loader_finishes_an_interrupted_swap(tmp_path):
    """A save killed after the old folder moved away: `check_pretrained_path`, the
    entry of every loader, puts the complete new save in place."""
    import hf_clipadapt.io as io
    from hf_clipadapt.checkpoints import check_pretrained_path

    target = tmp_path / "ckpt"
    write_directory_atomic(target, lambda d: (d / "w.txt").write_text("old"))

    class Killed(BaseException):
        pass

    def kill(k):
        if k == 3:
            raise Killed

    io._step_hook = kill
    try:
        with pytest.raises(Killed):
            write_directory_atomic(target, lambda d: (d / "w.txt").write_text("new"))
    finally:
        io._step_hook = None
    assert not target.exists() and (tmp_path / "ckpt.hf_clipadapt-ready").is_dir()
    assert check_pretrained_path(str(target)) == str(target)
    assert (target / "w.txt").read_text() == "new" and not (tmp_path / "ckpt.hf_clipadapt-old").exists()


def test_loader_leaves_a_save_in_progress_alone(tmp_path):
    from hf_clipadapt.checkpoints import check_pretrained_path

    target = tmp_path / "ckpt"
    write_directory_atomic(target, lambda d: (d / "w.txt").write_text("old"))
    (tmp_path / "ckpt.hf_clipadapt-writing").mkdir()  # another process may be writing it right now
    check_pretrained_path(str(target))
    assert (tmp_path / "ckpt.hf_clipadapt-writing").is_dir() and (target / "w.txt").read_text() == "old"
    write_directory_atomic(target, lambda d: (d / "w.txt").write_text("new"))  # the next save clears it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_user_files_survive_saves_and_stale_model_files_do_not(tmp_path):
    """The rule: a save carries every entry of the old folder that the previous save
    did not write (and this one does not overwrite); a folder without a manifest is
    all user files."""
    target = tmp_path / "out"
    (target / "checkpoints" / "step_1").mkdir(parents=True)
    (target / "checkpoints" / "step_1" / "state.bin").write_text("optimizer")
    (target / "results.json").write_text("before the save")

    def save(files):
        write_directory_atomic(target, lambda d: [(d / f).write_text(f) for f in files])

    save(["config.json", "model-1.safetensors", "model-2.safetensors", "README.md"])
    (target / "eval.json").write_text("after the save")
    save(["config.json", "model.safetensors", "README.md"])  # unsharded now: the shards must go
    names = {p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()}
    from hf_clipadapt.io import MANIFEST_NAME

    assert names == {
        "config.json",
        "model.safetensors",
        "README.md",
        MANIFEST_NAME,
        "results.json",
        "eval.json",
        "checkpoints/step_1/state.bin",
    }
    assert (target / "results.json").read_text() == "before the save"
    assert (target / "checkpoints" / "step_1" / "state.bin").read_text() == "optimizer"


def test_save_refuses_a_file_and_the_working_folder(tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(NotADirectoryError, match="not a folder"):
        write_directory_atomic(tmp_path / "a-file", lambda d: None)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="working folder"):
        write_directory_atomic(".", lambda d: None)


def test_example_output_folder_keeps_results_and_checkpoints_across_model_saves(tmp_path):
    """What the examples do: results.json and an Accelerate checkpoints/ folder in
    output_dir, the model (with its card) saved there before and after."""
    import json

    from hf_clipadapt.io import MANIFEST_NAME
    from hf_clipadapt.testing_utils import tiny_carded_model_class

    Tiny = tiny_carded_model_class("hf_clipadapt_io_tiny")
    TinyConfig = Tiny.config_class

    out = tmp_path / "output_dir"
    (out / "checkpoints" / "step_10").mkdir(parents=True)
    (out / "checkpoints" / "step_10" / "optimizer.bin").write_bytes(b"state")
    (out / "results.json").write_text(json.dumps({"accuracy": 1.0}))
    first = Tiny(TinyConfig())
    first.save_pretrained(out)
    (out / "results.json").write_text(json.dumps({"accuracy": 2.0}))  # rewritten after the save
    second = Tiny(TinyConfig())
    with torch.no_grad():
        second.linear.weight.fill_(3.0)
    second.save_pretrained(out)

    assert json.loads((out / "results.json").read_text()) == {"accuracy": 2.0}
    assert (out / "checkpoints" / "step_10" / "optimizer.bin").read_bytes() == b"state"
    written = set(json.loads((out / MANIFEST_NAME).read_text())["files"])
    assert written == {"config.json", "model.safetensors", "README.md"}, "the manifest lists the save's files only"
    assert torch.equal(Tiny.from_pretrained(out).linear.weight, torch.full((2, 2), 3.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["output_dir"]


def test_a_users_own_backup_folders_are_not_taken_for_an_interrupted_save(tmp_path):
    from hf_clipadapt.checkpoints import check_pretrained_path

    target = tmp_path / "model"
    write_directory_atomic(target, lambda d: (d / "w.txt").write_text("mine"))
    for name in ("model.old", "model.ready", "model.writing", "model.bak"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "w.txt").write_text(name)
    check_pretrained_path(str(target))
    write_directory_atomic(target, lambda d: (d / "w.txt").write_text("new"))
    for name in ("model.old", "model.ready", "model.writing", "model.bak"):
        assert (tmp_path / name / "w.txt").read_text() == name


def test_symlinked_target_becomes_a_folder_and_leaves_the_link_target_alone(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "results.json").write_text("user")
    link = tmp_path / "out"
    link.symlink_to(real, target_is_directory=True)
    write_directory_atomic(link, lambda d: (d / "config.json").write_text("new"))
    assert link.is_dir() and not link.is_symlink()
    assert (link / "config.json").read_text() == "new" and (link / "results.json").read_text() == "user"
    assert (real / "results.json").read_text() == "user", "the link's target keeps its files"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "real"]
