"""Loading a CraFT folder never contacts the address saved in it, nor sends the token.

Before, `CraFTForImageClassification.from_pretrained` connected to `config.black_box` and sent
$HF_CLIPADAPT_BLACK_BOX_TOKEN with `GET /info`: a loopback listener standing in for an
attacker's host recorded the connection (and the bearer token).
"""

import socket
import threading

import pytest

from .conftest import edit_config

TOKEN = "secret-token-never-sent"


class Listener:
    """A TCP listener on 127.0.0.1 that records every connection and what it received."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.received: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(0.5)
                try:
                    self.received.append(conn.recv(65536))
                except OSError:
                    self.received.append(b"")

    def close(self):
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


@pytest.fixture
def listener():
    server = Listener()
    yield server
    server.close()


@pytest.fixture
def craft_folder(tmp_path, listener):
    from hf_clipadapt.craft import CraFTForImageClassification
    from hf_clipadapt.craft.configuration_craft import CraFTConfig

    config = CraFTConfig(
        black_box="http://127.0.0.1:9",
        n_ctx=2,
        text_width=8,
        intrinsic_dim=4,
        refine_hidden=4,
        id2label={0: "a", 1: "b"},
    )
    folder = tmp_path / "craft"
    CraFTForImageClassification(config).save_pretrained(folder)
    edit_config(folder, black_box=listener.url)  # the attacker's address
    return folder


def _loaders():
    from transformers import AutoModel

    from hf_clipadapt.craft import CraFTForImageClassification

    return {
        "from_pretrained": CraFTForImageClassification.from_pretrained,
        "AutoModel": lambda f: AutoModel.from_pretrained(f, trust_remote_code=False),
    }


@pytest.mark.parametrize("loader", ["from_pretrained", "AutoModel"])
def test_loading_makes_no_request_and_sends_no_token(craft_folder, listener, monkeypatch, loader):
    monkeypatch.setenv("HF_CLIPADAPT_BLACK_BOX_TOKEN", TOKEN)
    try:
        model = _loaders()[loader](craft_folder)
    except Exception:  # noqa: BLE001 - the old code fails after connecting; the listener tells
        model = None
    assert listener.received == [], f"{loader} contacted the saved address: {listener.received[:1]}"
    assert model is not None and model.black_box is None
    with pytest.raises(ValueError, match="HF_CLIPADAPT_BLACK_BOX_URL"):  # says how to connect
        model.require_black_box()


def test_connect_needs_the_url_confirmed_beside_the_token(craft_folder, listener, monkeypatch):
    from hf_clipadapt.craft import CraFTForImageClassification

    monkeypatch.setenv("HF_CLIPADAPT_BLACK_BOX_TOKEN", TOKEN)
    monkeypatch.setenv("HF_CLIPADAPT_BLACK_BOX_URL", "http://127.0.0.1:1")  # the user's server, not the saved one
    with pytest.raises(PermissionError, match="never decides where your token goes"):
        CraFTForImageClassification.from_pretrained(craft_folder, connect=True)
    with pytest.raises(PermissionError):
        CraFTForImageClassification.from_pretrained(craft_folder, connect=True, token=TOKEN)
    assert listener.received == []


def test_an_unconnected_model_saves_and_reloads(craft_folder, tmp_path):
    import torch

    from hf_clipadapt.craft import CraFTForImageClassification

    model = CraFTForImageClassification.from_pretrained(craft_folder)
    model.save_pretrained(tmp_path / "again")
    again = CraFTForImageClassification.from_pretrained(tmp_path / "again")
    assert torch.equal(again.prompt.z, model.prompt.z) and again.config.black_box == model.config.black_box
