"""Use this checkout's card templates, also when hf_clipadapt is installed (editable) from
another checkout, whose `hf_clipadapt.model_cards` folder may not have ueo.md yet."""

from pathlib import Path

import hf_clipadapt.hub as _hub

_HERE = Path(__file__).resolve().parents[2] / "model_cards"
_installed = _hub.template_path


def _template_path(name: str) -> str:
    local = _HERE / name
    return str(local) if local.is_file() else _installed(name)


_hub.template_path = _template_path
