"""Checks shared by every `from_pretrained` in the package.

transformers answers a mistyped local folder with "Repo id must be in the form
'repo_name'...", a corrupt weights file with a `SafetensorError` that names no
file, and a folder of another model type with a warning and an empty model. The
helpers here turn each of those into an error that says what went wrong and what
to do, before any model is built.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

# Keyword arguments of `from_pretrained` that locate files on the Hub or in its cache.
HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder", "proxies")

_ALIASES: dict[str, str] = {}


def register_checkpoint_alias(name: str, path: str | os.PathLike) -> None:
    """Let `name` stand for a local checkpoint folder in every `from_pretrained` here.

    Packages that ship weights (the testbed CLIP) register a short name, so saved
    configs refer to "testbed" instead of this machine's absolute site-packages path."""
    _ALIASES[name] = str(path)


def resolve_alias(name: str | os.PathLike) -> str:
    return _ALIASES.get(str(name), str(name))


def alias_of(path: str | os.PathLike) -> str | None:
    """The registered name of a local checkpoint folder, if it has one."""
    try:
        target = Path(path).resolve()
    except (OSError, TypeError):
        return None
    for name, folder in _ALIASES.items():
        if Path(folder).resolve() == target:
            return name
    return None


def looks_like_local_path(name: str) -> bool:
    """A path the user meant as a folder on this machine (not a Hub id "owner/name")."""
    return (
        os.path.isabs(name) or name.startswith((".", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name
    )


def check_pretrained_path(name_or_path: str | os.PathLike) -> str:
    """Resolve aliases, finish a save that was interrupted (`io.recover_directory`), and
    fail clearly on a local folder that does not exist or holds a link out of itself."""
    from .io import recover_directory

    name = resolve_alias(name_or_path)
    recover_directory(name, remove_incomplete=False)
    if os.path.isdir(name):
        check_contained(name)
        return name
    if os.path.exists(name):
        raise NotADirectoryError(f"{name!r} is a file; from_pretrained takes a checkpoint folder (or a Hub id)")
    if looks_like_local_path(name):
        raise FileNotFoundError(
            f"the checkpoint folder {name!r} does not exist. Check the path (it is read relative to "
            f"{os.getcwd()!r}), or pass a Hub id such as 'openai/clip-vit-base-patch16'."
        )
    check_hub_reachable(name)
    return name


HUB_PROBE_TIMEOUT = 5.0  # seconds for one HEAD request to the Hub endpoint


def check_hub_reachable(repo_id: str) -> None:
    """Fail fast, and say why, when `repo_id` is not in the local cache and the Hub cannot
    be reached while HF_HUB_OFFLINE is unset: transformers would otherwise retry each file
    for a minute (71 s measured here) before a generic "couldn't connect". One HEAD request
    to the endpoint decides; any answer, even an error status, counts as reachable."""
    from huggingface_hub import constants, try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import get_session

    if constants.HF_HUB_OFFLINE or os.environ.get("TRANSFORMERS_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE"):
        return  # offline mode fails fast by itself, with its own message
    try:
        if isinstance(try_to_load_from_cache(repo_id, "config.json"), str):
            return  # cached: transformers can fall back to the local copy
    except HFValidationError:
        return  # not a repo id: transformers says so
    try:
        get_session().head(constants.ENDPOINT, timeout=HUB_PROBE_TIMEOUT)
    except Exception as e:  # the HTTP client's transport errors (refused, DNS, timeout, proxy)
        raise OSError(
            f"{repo_id!r} is not a local folder nor in the Hugging Face cache, and the Hub at {constants.ENDPOINT} "
            f"cannot be reached ({type(e).__name__}: {e}). Connect to the network, check the name, or pass a local "
            "checkpoint folder (with HF_HUB_OFFLINE=1 to stay offline)."
        ) from e


def check_contained(folder: str | os.PathLike) -> None:
    """Refuse a checkpoint folder holding a file or folder that resolves outside it (a
    symlink to ~/.ssh, /etc, another user's files): loading reads only the folder itself.
    Hub cache snapshots, whose files link to the repo's own `blobs/`, are accepted."""
    root = Path(folder).resolve()
    allowed = [root]
    if root.parent.name == "snapshots":  # huggingface_hub's cache: snapshots/<rev>/file -> ../../blobs/<hash>
        allowed.append(root.parent.parent / "blobs")
    for dirpath, dirnames, filenames in os.walk(root):
        for entry in dirnames + filenames:
            path = Path(dirpath) / entry
            if not path.is_symlink():
                continue
            target = path.resolve()
            if not any(target == base or base in target.parents for base in allowed):
                raise OSError(
                    f"{path} links outside the checkpoint folder {root} (to {target}); refused: a checkpoint "
                    "is read from its own folder only. Copy the file into the folder if you trust it."
                )


def read_config_dict(name_or_path: str, **hub_kwargs) -> dict:
    """config.json of a local folder or Hub repo, as a dict."""
    from transformers.utils import cached_file

    path = cached_file(name_or_path, "config.json", **hub_kwargs)
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise OSError(f"{path} is not a readable JSON config ({e}); re-save the checkpoint") from e


def check_model_type(name_or_path: str, expected: str, class_name: str, **hub_kwargs) -> None:
    """Refuse a checkpoint of another model type, naming both types."""
    found = read_config_dict(name_or_path, **hub_kwargs).get("model_type")
    if found != expected:
        raise ValueError(
            f"{name_or_path!r} holds a {found!r} model, not a {expected!r} one, so {class_name} cannot load it. "
            f"Load it with the class of its own type, or with transformers.AutoModel.from_pretrained (after "
            "`import hf_clipadapt`), which picks the class from config.json."
        )


def check_safetensors(path: str | os.PathLike) -> None:
    """Read the header of a .safetensors file; a truncated or corrupt one raises an
    OSError that names the file."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            f.keys()
    except Exception as e:  # SafetensorError, or an OSError on a truncated file
        raise OSError(
            f"the weights file {path} is corrupt or truncated ({e}). Re-save the model, or re-download the checkpoint "
            "(a save interrupted outside hf_clipadapt's atomic save_pretrained can leave such a file)."
        ) from e


def load_safetensors(path: str | os.PathLike) -> dict:
    """`safetensors.torch.load_file` with the file named in any error; a non-finite
    weight is refused."""
    from safetensors.torch import load_file

    check_safetensors(path)
    state = load_file(str(path))
    for key, tensor in state.items():
        _check_finite(path, key, tensor)
    return state


def check_finite_weights(path: str | os.PathLike) -> None:
    """Refuse a weights file holding NaN or inf, naming the file and the tensor (read one
    tensor at a time)."""
    from safetensors import safe_open

    check_safetensors(path)
    with safe_open(str(path), framework="pt") as f:
        for key in f.keys():
            _check_finite(path, key, f.get_tensor(key))


def _check_finite(path, key: str, tensor) -> None:
    import torch

    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        raise OSError(
            f"the weights file {path} holds non-finite values (NaN or inf) in {key!r}; refused: such a model "
            "would return NaN logits. Re-save it from a healthy run, or re-download the checkpoint."
        )


def check_loading_info(path, info: dict, class_name: str) -> None:
    """Refuse a load that left tensors missing, unexpected or of another shape (transformers
    only warns, and fills the missing ones with fresh initial values)."""
    problems = {kind: sorted(str(k) for k in info.get(kind) or ()) for kind in ("missing_keys", "unexpected_keys")}
    problems["mismatched_keys"] = sorted(
        str(m[0] if isinstance(m, (tuple, list)) else m) for m in info.get("mismatched_keys") or ()
    )
    problems = {kind: keys for kind, keys in problems.items() if keys}
    if problems:
        said = "; ".join(
            f"{kind.replace('_keys', '')}: {keys[:8]}" + (f" (+{len(keys) - 8})" if len(keys) > 8 else "")
            for kind, keys in problems.items()
        )
        raise OSError(
            f"the weights in {path} do not match {class_name} ({said}). The checkpoint is incomplete or was "
            "saved by another class or version; refused rather than run with freshly initialised tensors."
        )


def load_safetensors_numpy(path: str | os.PathLike) -> dict:
    """`safetensors.numpy.load_file` with the file named in any error (data only: no pickle)."""
    from safetensors.numpy import load_file

    check_safetensors(path)
    return load_file(str(path))


PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json", "vocab.json")


def load_saved_part(load, name_or_path, what: str, files: tuple[str, ...]):
    """`load(name_or_path)` for an image processor or tokenizer saved beside the weights.

    None, quietly, where the checkpoint holds none of `files`; where it holds one that
    fails to load, None with a warning that names the part, the folder and the error
    (it used to be dropped silently, and pipeline(...) then failed far from the cause)."""
    import warnings

    from transformers.utils import cached_file

    present = False
    for name in files:
        try:
            present = cached_file(str(name_or_path), name, _raise_exceptions_for_missing_entries=False) is not None
        except Exception:  # noqa: BLE001 - an unreachable Hub id: nothing to load
            present = False
        if present:
            break
    if not present:
        return None
    try:
        return load(str(name_or_path))
    except Exception as e:  # noqa: BLE001 - reported, not raised: the weights themselves loaded
        warnings.warn(
            f"the {what} saved in {name_or_path} could not be loaded ({type(e).__name__}: {e}); the model "
            f"loads without it. Re-save the {what} (save_pretrained) or pass your own.",
            stacklevel=3,
        )
        return None


def weights_file(name_or_path: str, **hub_kwargs) -> str:
    """Path of model.safetensors in a local folder or Hub repo; a clear error if absent."""
    from transformers.utils import cached_file

    path = cached_file(name_or_path, "model.safetensors", _raise_exceptions_for_missing_entries=False, **hub_kwargs)
    if path is None:
        raise OSError(
            f"{name_or_path!r} has no model.safetensors. Save models with save_pretrained(); checkpoints in other "
            "formats (pytorch_model.bin) are not read by hf_clipadapt."
        )
    return path
