"""Writes that never leave a half-written file or a mixed checkpoint behind.

A crash or a full disk during a save must leave the previous save (or nothing),
never a truncated file that loads as garbage later, nor a folder that holds the
new config next to the old weights.

Folder saves (`write_directory_atomic`) switch whole folders with renames. For a
target `<dir>` they go through these states, each of which `recover_directory`
turns back into a plain, complete `<dir>`:

1. write everything into the sibling `<dir>.hf_clipadapt-writing` (incomplete:
   rolled back);
2. rename it to `<dir>.hf_clipadapt-ready` (complete: rolled forward from here on);
3. rename the old `<dir>` to `<dir>.hf_clipadapt-old`;
4. rename `<dir>.hf_clipadapt-ready` to `<dir>`;
5. delete `<dir>.hf_clipadapt-old`.

Each rename is atomic on POSIX file systems, so at every instant either the old
save or the new one is whole on disk, and the names say which one wins.

The user's own files in `<dir>` survive a save. Each save records the files it
wrote in a manifest (`MANIFEST_NAME`); the next save carries every entry of the
old folder that is neither in the old manifest nor written again (a
`results.json`, a `checkpoints/` folder, tracker logs) into the new folder, as
hard links where the file system allows (no copy of large files; a file still
open for appending keeps growing in the new folder). Files that the previous save
wrote and this one does not (an old shard, a stale card) are dropped. A folder
that has no manifest (a first save into an existing output folder) is all user
files: everything in it that the save does not overwrite is kept.

One writer per folder at a time, as for any checkpoint: two processes saving to the
same folder at once must be kept apart by the caller (e.g. `is_main_process`).

A folder that cannot be renamed (a mount point; rename failing with EPERM, EACCES,
EROFS, EBUSY or EXDEV), or whose parent cannot hold the sibling folders, has its
contents replaced instead, file by file behind a journal, inside the folder itself:

1. the new save is written into `<dir>/.hf_clipadapt-staging` (incomplete: deleted);
2. the journal `<dir>/.hf_clipadapt-switch.json` is written (atomically), naming the
   entries to install and the previous save's entries to drop: from here on the new
   save is complete and every `recover_directory` rolls it forward;
3. each old entry is moved to `<dir>/.hf_clipadapt-previous` and its new one renamed
   into place (renames inside one file system; each step can be redone);
4. the journal is deleted, then the staging and previous folders.

A loader recovers before reading, so it sees either the whole old save (no journal)
or the whole new one (journal: finished first). User files are not touched.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

MANIFEST_NAME = ".hf_clipadapt_manifest.json"
# Distinctive names: a user's own "<dir>.old" backup must never be taken for ours.
_SUFFIXES = (".hf_clipadapt-writing", ".hf_clipadapt-ready", ".hf_clipadapt-old")
# The in-place switch's names inside the folder (see the module docstring).
_STAGING, _PREVIOUS, _JOURNAL = ".hf_clipadapt-staging", ".hf_clipadapt-previous", ".hf_clipadapt-switch.json"
_INTERNAL = frozenset({_STAGING, _PREVIOUS, _JOURNAL, _JOURNAL + ".tmp"})
# A rename of the folder itself failing with one of these means "replace its contents instead".
_CANNOT_RENAME = frozenset({errno.EPERM, errno.EACCES, errno.EROFS, errno.EBUSY, errno.EXDEV})

# Called with the number of the state just reached (1 = written, ..., 5 = old
# deleted; in place: 11 = staged, 12 = journal written, 13 = one entry switched).
# Tests set it to kill the process between two steps of a save.
_step_hook = None


def save_safetensors_atomic(tensors: dict, path: str | os.PathLike, metadata: dict | None = None) -> None:
    """`safetensors.torch.save_file` to a temporary name in the same folder, then rename."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _siblings(directory: Path) -> tuple[Path, Path, Path]:
    return tuple(directory.with_name(directory.name + s) for s in _SUFFIXES)


def _target(path: str | os.PathLike) -> Path:
    """The absolute folder path (not resolved: a symlink is replaced, not followed)."""
    return Path(os.path.abspath(os.fspath(path)))


def _step(k: int) -> None:
    if _step_hook is not None:
        _step_hook(k)


def _remove(path: Path) -> None:
    if path.is_symlink():  # a symlinked target folder was renamed: drop the link, not its target's files
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def _rename_if_present(src: Path, dst: Path) -> None:
    # A loader may have taken the same step a moment ago (see `recover_directory`).
    try:
        os.rename(src, dst)
    except FileNotFoundError:
        if not dst.exists():
            raise


def _roll_forward(directory: Path, ready: Path, old: Path, in_place: bool = True) -> None:
    """States 2 to 5: put the complete new save `ready` in place of `directory`. If `directory`
    cannot be renamed, its contents are replaced from `ready` in place (`in_place`; a loader
    passes False and reads the previous save, still whole in `directory`, instead)."""
    if ready.is_dir():
        if directory.exists() and old.exists():
            raise OSError(
                f"an interrupted save left {str(ready)!r} (the new save) and {str(old)!r} (the previous "
                f"one), and {str(directory)!r} was created since; keep the one you want under "
                f"{str(directory)!r} and delete the others"
            )
        if directory.exists():
            try:
                _rename_if_present(directory, old)
            except OSError as e:
                if e.errno not in _CANNOT_RENAME or not directory.is_dir():
                    raise
                if in_place:
                    _write_in_place(directory, lambda staging: _copy_saved(ready, staging))
                    _remove(ready)
                return
        _step(3)
        try:
            _rename_if_present(ready, directory)
        except OSError:
            if old.exists() and not directory.exists():  # never leave no save at all
                os.rename(old, directory)
            raise
        _step(4)
    if old.exists() and directory.exists():
        _remove(old)
    _step(5)


def recover_directory(path: str | os.PathLike, *, remove_incomplete: bool = True) -> bool:
    """Finish or roll back a folder save that was interrupted; True if there was one.

    A complete `<dir>.hf_clipadapt-ready` replaces `<dir>` (roll forward); a
    `<dir>.hf_clipadapt-old` is deleted once the new save is in place, or put back if
    nothing else is (roll back). An incomplete `<dir>.hf_clipadapt-writing` is deleted
    when `remove_incomplete`; loaders pass False, since it may belong to a save still
    running, and leave it to the next save. Cheap when there is nothing to do (three
    `stat` calls), so loaders call it on every local path.
    """
    directory = _target(path)
    writing, ready, old = _siblings(directory)
    found = writing.exists() or ready.exists() or old.exists()
    if directory.is_dir() and not directory.is_symlink():
        if _finish_in_place(directory):  # a journaled in-place switch is complete: finish it first
            found = True
            _remove(ready)  # its content was just installed (the journal is written after copying it)
        elif remove_incomplete and (directory / _STAGING).exists():
            found = True
            _remove(directory / _STAGING)
    if remove_incomplete and writing.exists():
        _remove(writing)
    if ready.is_dir():
        _roll_forward(directory, ready, old, in_place=remove_incomplete)
    elif old.exists():
        if directory.exists():
            _remove(old)
        else:  # no new save got in place: the previous one is the valid one
            _rename_if_present(old, directory)
    return found


def _read_manifest(directory: Path) -> set[str]:
    try:
        return set(json.loads((directory / MANIFEST_NAME).read_text(encoding="utf-8"))["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return set()


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not supported
        shutil.copy2(src, dst)


def _carry_user_files(old: Path, new: Path) -> None:
    """Bring into `new` every top-level entry of `old` that the previous save did not
    write and this save does not write either (see the module docstring)."""
    previous = _read_manifest(old)
    for entry in sorted(old.iterdir()):
        name = entry.name
        if name == MANIFEST_NAME or name in _INTERNAL or name in previous or (new / name).exists():
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, new / name, symlinks=True, copy_function=_link_or_copy)
        elif entry.is_symlink():
            os.symlink(os.readlink(entry), new / name)
        else:
            _link_or_copy(str(entry), str(new / name))


def write_directory_atomic(directory: str | os.PathLike, write) -> None:
    """Call `write(tmp_dir)` on a fresh sibling folder, then switch `directory` to it
    as a whole with renames (states in the module docstring).

    If `write` fails, `directory` is untouched. A crash at any later instant leaves
    either the complete old or the complete new save, which `recover_directory`
    (called by every loader of the package, and before the next save) puts in place.
    """
    directory = _target(directory)
    if Path.cwd() == directory or directory in Path.cwd().parents:
        raise ValueError(
            f"cannot save into {str(directory)!r}, the working folder (or one above it): save into a subfolder"
        )
    directory.parent.mkdir(parents=True, exist_ok=True)
    recover_directory(directory)
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"cannot save to {str(directory)!r}: it is a file, not a folder")
    writing, ready, old = _siblings(directory)
    if os.path.ismount(directory):
        return _write_in_place(directory, write)
    try:
        writing.mkdir()
    except OSError as e:  # the parent cannot hold the siblings: replace the folder's contents instead
        if e.errno not in _CANNOT_RENAME or not directory.is_dir() or directory.is_symlink():
            raise
        return _write_in_place(directory, write)
    try:
        write(writing)
        written = sorted(p.name for p in writing.iterdir())
        (writing / MANIFEST_NAME).write_text(json.dumps({"files": written}, indent=1), encoding="utf-8")
        if directory.is_dir():
            _carry_user_files(directory, writing)
        _fsync_tree(writing)
    except BaseException:
        shutil.rmtree(writing, ignore_errors=True)
        raise
    _step(1)
    os.rename(writing, ready)
    _step(2)
    _roll_forward(directory, ready, old)


def _plain_name(name) -> bool:
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and "/" not in name
        and "\\" not in name
        and name not in _INTERNAL
    )


def _copy_saved(source: Path, staging: Path) -> None:
    """Copy what a save wrote (its manifest's entries) from `source` into `staging`; the user's
    files, carried into `source`, are already in the folder being switched in place."""
    for name in sorted(_read_manifest(source)):
        src = source / name
        if not _plain_name(name) or not (src.exists() or src.is_symlink()):
            continue
        if src.is_dir() and not src.is_symlink():
            shutil.copytree(src, staging / name, symlinks=True)
        else:
            shutil.copy2(src, staging / name, follow_symlinks=False)


def _write_in_place(directory: Path, write) -> None:
    """Replace `directory`'s saved files without renaming the folder (states in the module docstring)."""
    staging = directory / _STAGING
    _remove(staging)  # after `recover_directory`, one left here is incomplete
    staging.mkdir()
    try:
        write(staging)
        written = sorted(p.name for p in staging.iterdir() if p.name != MANIFEST_NAME)
        (staging / MANIFEST_NAME).write_text(json.dumps({"files": written}, indent=1), encoding="utf-8")
        _fsync_tree(staging)
    except BaseException:
        _remove(staging)
        raise
    _step(11)
    drop = sorted(n for n in _read_manifest(directory) if n not in written and _plain_name(n))
    journal = directory / (_JOURNAL + ".tmp")
    journal.write_text(json.dumps({"install": [*written, MANIFEST_NAME], "drop": drop}), encoding="utf-8")
    _fsync(journal)
    os.replace(journal, directory / _JOURNAL)
    _fsync(directory)
    _step(12)
    _finish_in_place(directory)


def _move_aside(directory: Path, name: str, previous: Path) -> None:
    entry = directory / name
    if entry.exists() or entry.is_symlink():
        _remove(previous / name)
        os.rename(entry, previous / name)


def _finish_in_place(directory: Path) -> bool:
    """Finish a journaled in-place switch (redoable from any point); False if there is none."""
    try:
        plan = json.loads((directory / _JOURNAL).read_text(encoding="utf-8"))
        install, drop = list(plan["install"]), list(plan["drop"])
    except FileNotFoundError:
        return False
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise OSError(
            f"{str(directory / _JOURNAL)!r} is unreadable ({e}): an in-place save of {str(directory)!r} "
            f"was interrupted; keep {_STAGING} (the new save) or the folder's files (the old one) "
            "and delete the journal"
        ) from e
    staging, previous = directory / _STAGING, directory / _PREVIOUS
    if staging.is_symlink() or previous.is_symlink():
        raise OSError(f"refusing to finish the in-place save of {str(directory)!r}: its staging folder is a link")
    previous.mkdir(exist_ok=True)
    for name in (n for n in install if _plain_name(n)):
        if (staging / name).exists() or (staging / name).is_symlink():  # not installed yet
            _move_aside(directory, name, previous)
            os.rename(staging / name, directory / name)
            _step(13)
    for name in (n for n in drop if _plain_name(n)):
        _move_aside(directory, name, previous)
    _fsync(directory)  # the renames are on disk before the journal goes
    (directory / _JOURNAL).unlink()
    _remove(staging)
    _remove(previous)
    return True


def _fsync_tree(root: Path) -> None:
    """Flush the new files to disk before the renames make them the live save, so a
    power cut cannot leave a renamed folder of empty files (where fsync is supported)."""
    for p in [*root.rglob("*"), root]:
        if not p.is_symlink():
            _fsync(p)


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
