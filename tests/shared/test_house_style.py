"""CONTRIBUTING's size limits, measured after formatting, so CI keeps them: no module over 450
lines and no function over 60 in `hf_clipadapt/` (LoRA-Pro aside, whose limit is 80); no
function over 80 in `examples/` and `benchmarks/`."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node.end_lineno - node.lineno + 1


def _too_long(folder: str, limit) -> list[str]:
    return [
        f"{path.relative_to(ROOT)}:{name} has {n} lines (limit {limit(path)})"
        for path in sorted((ROOT / folder).rglob("*.py"))
        for name, n in _functions(path)
        if n > limit(path)
    ]


def test_library_modules_and_functions_keep_their_size():
    lora_pro = lambda p: "lora_pro" in p.parts  # noqa: E731
    modules = [
        f"{p.relative_to(ROOT)} has {n} lines"
        for p in sorted((ROOT / "hf_clipadapt").rglob("*.py"))
        if not lora_pro(p) and (n := len(p.read_text().splitlines())) > 450
    ]
    assert not modules, modules
    assert not _too_long("hf_clipadapt", lambda p: 80 if lora_pro(p) else 60)


@pytest.mark.parametrize("folder", ["examples", "benchmarks"])
def test_script_functions_stay_under_80_lines(folder):
    assert not _too_long(folder, lambda p: 80)
