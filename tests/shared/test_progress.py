"""The progress-bar policy: main process, long loops, terminals, and the off switches."""

import io
import sys

import pytest

from hf_clipadapt import progress
from hf_clipadapt.progress import ENV_SWITCH, progress_bar, progress_enabled


@pytest.fixture
def terminal(monkeypatch):
    """Output to an interactive terminal (captured in a buffer), with no switch set."""
    monkeypatch.setattr(progress, "_interactive", lambda: True)
    monkeypatch.delenv(ENV_SWITCH, raising=False)
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    return io.StringIO()


def test_bar_shows_on_a_terminal_for_a_long_loop_on_the_main_process(terminal):
    assert list(progress_bar(range(50), desc="long", file=terminal)) == list(range(50))
    assert "long" in terminal.getvalue()


@pytest.mark.parametrize(
    "case", ["short loop", "other rank", "rank from environment", "env switch", "transformers switch", "disable"]
)
def test_bar_is_hidden(terminal, monkeypatch, request, case):
    kwargs = {"desc": "hidden", "file": terminal}
    items = range(50)
    if case == "short loop":
        items = range(progress.MIN_STEPS - 1)
    elif case == "other rank":
        kwargs["main_process"] = False
    elif case == "rank from environment":
        monkeypatch.setenv("RANK", "1")
        kwargs["main_process"] = True  # a caller without an Accelerator says True on every rank
    elif case == "env switch":
        monkeypatch.setenv(ENV_SWITCH, "1")
    elif case == "transformers switch":
        from transformers.utils import logging as hf_logging

        request.addfinalizer(hf_logging.enable_progress_bar)  # also re-enables huggingface_hub's bars
        hf_logging.disable_progress_bar()
    else:
        kwargs["disable"] = True
    bar = progress_bar(items, **kwargs)
    assert list(bar) == list(items), "a hidden bar still iterates"
    bar.set_postfix(loss=1.0)
    bar.close()
    assert terminal.getvalue() == ""


def test_no_bar_when_output_is_not_a_terminal_unless_forced(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # a log file
    monkeypatch.delenv(ENV_SWITCH, raising=False)
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert not progress._interactive()
    assert not progress_enabled(total=1000, main_process=True)
    monkeypatch.setenv(ENV_SWITCH, "0")
    assert progress_enabled(total=1000, main_process=True)
    assert not progress_enabled(total=3, main_process=True), "short loops stay quiet even when forced"


def test_total_bar_without_iterable_counts_updates(terminal):
    bar = progress_bar(total=20, desc="manual", file=terminal)
    for _ in range(20):
        bar.update(1)
    bar.close()
    assert "20/20" in terminal.getvalue()
