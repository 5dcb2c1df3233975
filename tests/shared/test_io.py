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
    with pytest.raises(Exception):
        save_safetensors_atomic({"t": "not a tensor"}, path)
    assert torch.equal(load_file(str(path))["t"], torch.arange(6).view(2, 3).T)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.safetensors"]
