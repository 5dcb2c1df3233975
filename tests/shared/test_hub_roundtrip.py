"""Every model kind saved by the package loads in a fresh process, by the route the
cards document (`hf_clipadapt.auto.AUTO_SHIM_FILE`):

* with `import hf_clipadapt`: `AutoModel.from_pretrained(folder)`, no remote code;
* without the import: `AutoModel.from_pretrained(folder, trust_remote_code=True)` runs the
  saved shim, which only imports the installed package;
* without the import and without `trust_remote_code`: refused, and nothing of the
  package (or the folder) is imported;
* with the package not installed: transformers' refusal says `pip install hf_clipadapt`.

The models are the contract batteries' own (`make_model` of each tests/<m> tester) plus
an unfitted SHIP generator; the loaded state dicts must equal the saved ones exactly."""

import importlib.util
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[2]
TESTERS = {  # model kind: (test file, tester class)
    "gda": ("gda/test_contract.py", "TestGDAContract"),
    "sfda": ("sfda/test_contract.py", "TestSFDAContract"),
    "tzsl": ("tzsl/test_contract.py", "TestTZSLContract"),
    "ueo": ("ueo/test_contract.py", "TestUEOContract"),
    "coop": ("coop/test_coop.py", None),
    "clip_adapter": ("clip_adapter/test_clip_adapter.py", None),
    "tip_adapter": ("tip_adapter/test_tip_adapter.py", None),
    "craft": ("craft/test_modeling.py", None),
}

LOADER = r"""
import json, sys
mode, folders, out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
if mode == "missing":  # the package is not installed
    import importlib.abc
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "hf_clipadapt" or name.startswith("hf_clipadapt."):
                raise ModuleNotFoundError(f"No module named {name!r}")
    sys.meta_path.insert(0, Block())
if mode == "import":
    import hf_clipadapt  # noqa: F401
from safetensors.torch import save_file
from transformers import AutoModel
report = {}
for kind, folder in folders.items():
    try:
        kwargs = {"trust_remote_code": True} if mode in ("remote", "missing") else {}
        model = AutoModel.from_pretrained(folder, **kwargs)
        save_file({k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}, f"{out}/{kind}.safetensors")
        report[kind] = {"loaded": type(model).__module__ + "." + type(model).__name__}
    except Exception as e:  # noqa: BLE001
        report[kind] = {"error": f"{type(e).__name__}: {e}"}
    report[kind]["package_imported"] = "hf_clipadapt" in sys.modules
print("ROUNDTRIP " + json.dumps(report))
"""


def _module(path: str, name: str = ""):
    """tests/<path> imported as a module of a package made for its folder, so its relative
    imports work. Not by the folder's own name: tests/conftest.py puts examples/ on the path,
    and a regular module there (examples/coop.py) wins over a namespace folder (tests/coop)."""
    folder, stem = path.split("/")[0], Path(path).stem
    package = f"_roundtrip_tests_{folder}"
    if package not in sys.modules:
        module = types.ModuleType(package)
        module.__path__ = [str(ROOT / "tests" / folder)]
        sys.modules[package] = module
    return importlib.import_module(f"{package}.{stem}")


def _tzsl_model():
    """The TZSL battery's tiny fitted model (its tester builds it in a fixture)."""
    from hf_clipadapt.tzsl import TZSLModel

    data = _module("tzsl/conftest.py", "_roundtrip_tzsl_conftest").synthetic_zsl()
    torch.manual_seed(0)
    model = TZSLModel.from_data(data, "fast", **_module("tzsl/test_contract.py", "_roundtrip_tzsl_contract").TINY)
    model.fit(data, seed=0, progress=False)
    return model


def _tester(kind):
    path, name = TESTERS[kind]
    module = _module(path, f"_roundtrip_{kind}")
    from hf_clipadapt.testing_utils import AdaptedModelTesterMixin

    classes = [
        v
        for k, v in vars(module).items()
        if isinstance(v, type)
        and issubclass(v, AdaptedModelTesterMixin)
        and v is not AdaptedModelTesterMixin
        and (name is None or k == name)
    ]
    assert len(classes) == 1, (kind, classes)
    return classes[0]()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    from hf_clipadapt.clip import CLIPBackbone
    from hf_clipadapt.ship import SHIPGenerator
    from hf_clipadapt.testing_utils import save_tiny_clip

    root = tmp_path_factory.mktemp("roundtrip")
    models = {
        kind: _tzsl_model() if kind == "tzsl" else _tester(kind).make_model(root / f"{kind}-parts") for kind in TESTERS
    }
    models["ship"] = SHIPGenerator.from_clip(
        CLIPBackbone.from_pretrained(save_tiny_clip(root / "ship-clip")), ["a", "b"]
    )
    folders = {}
    for kind, model in models.items():
        folders[kind] = str(root / f"saved-{kind}")
        model.save_pretrained(folders[kind])
    return root, models, folders


def _load_all(root, folders, mode):
    out = root / f"out-{mode}"
    out.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "HF_MODULES_CACHE": str(root / f"modules-{mode}"),
        "CUDA_VISIBLE_DEVICES": "",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, "-c", LOADER, mode, json.dumps(folders), str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=root,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # transformers may print its "run the custom code? [y/N]" prompt (no newline) before the report
    return json.loads(proc.stdout.rsplit("ROUNDTRIP ", 1)[1].splitlines()[0]), out


def test_every_kind_saves_the_shim_and_auto_map(saved):
    from hf_clipadapt.auto import AUTO_SHIM_FILE, MODELS

    _, _, folders = saved
    assert set(folders) == set(MODELS), "a model kind has no round-trip check"
    for kind, folder in folders.items():
        config = json.loads((Path(folder) / "config.json").read_text())
        assert config["auto_map"]["AutoModel"] == "hf_clipadapt_auto.Model", kind
        shim = (Path(folder) / AUTO_SHIM_FILE).read_text()
        code = [ln for ln in shim.split('"""')[-1].splitlines() if ln.strip()]
        assert code == ["import hf_clipadapt.auto", f"Config, Model = hf_clipadapt.auto.auto_classes({kind!r})"], kind
        card = (Path(folder) / "README.md").read_text()
        assert "pip install hf_clipadapt" in card and "library_name: hf_clipadapt" in card, kind


@pytest.mark.parametrize("mode", ["import", "remote"])
def test_fresh_process_loads_every_kind_identically(saved, mode):
    root, models, folders = saved
    report, out = _load_all(root, folders, mode)
    for kind, model in models.items():
        assert "error" not in report[kind], (kind, report[kind])
        assert report[kind]["loaded"].endswith(type(model).__name__), (kind, report[kind])
        loaded, expected = load_file(str(out / f"{kind}.safetensors")), model.state_dict()
        assert loaded.keys() == expected.keys(), kind
        assert all(torch.equal(loaded[k], expected[k].cpu()) for k in expected), kind


def test_without_import_or_trust_remote_code_nothing_runs(saved):
    root, _, folders = saved
    report, _ = _load_all(root, folders, "refuse")
    for kind, r in report.items():
        assert "trust_remote_code" in r.get("error", ""), (kind, r)
        assert not r["package_imported"], kind  # the shim never ran


def test_without_the_package_trust_remote_code_says_how_to_install(saved):
    root, _, folders = saved
    report, _ = _load_all(root, folders, "missing")
    for kind, r in report.items():
        assert "pip install hf_clipadapt" in r.get("error", ""), (kind, r)
