"""One policy for the package's progress bars.

A bar is shown only where a person watches it and it tells them something:

* on the main process only (one bar per job, not one per rank);
* for loops of at least `MIN_STEPS` steps: a bar for one batch flashes by and,
  in a log, leaves a line per loop for nothing;
* when the output is a terminal (or a Jupyter kernel): written to a file or a CI
  log, bars are hundreds of carriage-return lines;
* unless switched off: `HF_CLIPADAPT_DISABLE_PROGRESS_BARS=1`, or transformers'
  `transformers.utils.logging.disable_progress_bar()` (which also switches off
  huggingface_hub's bars, as does `HF_HUB_DISABLE_PROGRESS_BARS=1`).

`HF_CLIPADAPT_DISABLE_PROGRESS_BARS=0` forces bars on where output is not a
terminal (e.g. to watch a job through `tail -f`); the other rules still hold.
"""

from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm

ENV_SWITCH = "HF_CLIPADAPT_DISABLE_PROGRESS_BARS"
MIN_STEPS = 10


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    try:
        return shell is not None and type(shell.get_ipython()).__name__ == "ZMQInteractiveShell"
    except Exception:  # noqa: BLE001 - any failure means "not a notebook"
        return False


def _interactive() -> bool:
    """A person is watching: stderr (where tqdm writes) is a terminal, or a notebook."""
    return _in_notebook() or bool(getattr(sys.stderr, "isatty", lambda: False)())


def _rank_is_zero() -> bool:
    """Main process of a launch that set the usual rank variables (torchrun, accelerate)."""
    for name in ("RANK", "LOCAL_RANK"):
        value = os.environ.get(name, "0").strip()
        if value.isdigit() and int(value) != 0:
            return False
    return True


def _switched_off() -> bool:
    from huggingface_hub.utils import are_progress_bars_disabled

    try:
        from transformers.utils import logging as hf_logging

        transformers_off = not hf_logging.is_progress_bar_enabled()
    except ImportError:  # pragma: no cover - transformers is a dependency
        transformers_off = False
    return transformers_off or are_progress_bars_disabled()


def progress_enabled(total: int | None = None, main_process: bool | None = None, min_steps: int = MIN_STEPS) -> bool:
    """Whether a loop of `total` steps gets a bar under the policy above."""
    # Both must agree: a caller without an Accelerator says True on every rank of a launch.
    if main_process is False or not _rank_is_zero():
        return False
    switch = os.environ.get(ENV_SWITCH, "").strip().lower()
    if switch in ("1", "true", "yes", "on") or _switched_off():
        return False
    if total is not None and total < min_steps:
        return False
    forced_on = switch in ("0", "false", "no", "off")
    return forced_on or _interactive()


def progress_bar(
    iterable=None,
    *,
    total: int | None = None,
    main_process: bool | None = None,
    min_steps: int = MIN_STEPS,
    disable: bool = False,
    **kwargs,
) -> tqdm:
    """`tqdm(iterable, total=..., **kwargs)`, disabled unless `progress_enabled`.

    `main_process` is the caller's `accelerator.is_main_process`; the RANK/LOCAL_RANK
    variables of a launcher are checked as well. `disable=True` switches the bar off
    for this call whatever the policy says. A disabled bar still iterates and accepts
    `update`, `set_postfix` and `close`, so callers need no branches.
    """
    if total is None and iterable is not None:
        try:
            total = len(iterable)
        except TypeError:  # a generator: its length is unknown, the threshold cannot apply
            total = None
    enabled = not disable and progress_enabled(total, main_process, min_steps)
    return tqdm(iterable, total=total, disable=not enabled, **kwargs)
