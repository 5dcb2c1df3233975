"""The served black box on loopback: same scores as local, token, size limit, dropped connections.

Needs the [serve] extra (fastapi, uvicorn, httpx), which the dev extra installs.
"""

import socket

import numpy as np
import pytest
import torch

from hf_clipadapt.clip import CLIPBackbone
from hf_clipadapt.craft import (
    BlackBoxAuthError,
    BlackBoxConnectionError,
    BlackBoxServer,
    CraFTForImageClassification,
    CraFTTrainingArguments,
    LocalBlackBox,
    QueryBudgetExceeded,
    RemoteBlackBox,
)
from hf_clipadapt.craft.wire import pack, unpack
from hf_clipadapt.testing_utils import tiny_clip_model, tiny_clip_tokenizer, tiny_image_processor

CLASSES = ["cat", "dog", "car"]


@pytest.fixture(scope="module")
def local():
    return LocalBlackBox(CLIPBackbone(tiny_clip_model(), tiny_clip_tokenizer(), tiny_image_processor()), budget=100)


@pytest.fixture(scope="module")
def server(local):
    with BlackBoxServer(local, token="s3cret", max_request_bytes=200_000) as server:
        yield server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_http_scores_equal_local_scores(local, server):
    remote = RemoteBlackBox(server.url, token="s3cret", budget=5)
    assert server.host == "127.0.0.1" and remote.text_width == local.text_width
    x = torch.randn(4, 3, 30, 30, generator=torch.Generator().manual_seed(0))
    p0 = remote.context_embeddings("a photo of a")
    np.testing.assert_array_equal(p0, local.context_embeddings("a photo of a"))
    handle = remote.upload_images(x)
    assert handle == local.upload_images(x)
    contexts = np.stack([p0, p0 * 1.5])
    np.testing.assert_array_equal(remote.query(contexts, handle, CLASSES), local.query(contexts, handle, CLASSES))
    texts = [f"a photo of a {c}." for c in CLASSES]
    np.testing.assert_array_equal(remote.query_texts(texts, handle), local.query_texts(texts, handle))
    assert remote.queries == 3
    with pytest.raises(QueryBudgetExceeded):  # the client's own budget: refused before sending
        remote.query(np.stack([p0] * 3), handle, CLASSES)


def test_missing_or_wrong_token_and_oversized_requests_are_refused(server):
    with pytest.raises(BlackBoxAuthError, match="token"):
        _ = RemoteBlackBox(server.url).text_width
    with pytest.raises(BlackBoxAuthError, match="token"):
        RemoteBlackBox(server.url, token="guess").context_embeddings("a photo of a")
    remote = RemoteBlackBox(server.url, token="s3cret")
    with pytest.raises(ValueError, match="too large.*limit of 200000"):
        remote.upload_images(np.zeros((60, 3, 30, 30), np.float32))  # 648 kB > 200 kB
    import httpx

    chunked = httpx.post(
        server.url + "/images",
        content=iter([b"x" * 150_000, b"x" * 150_000]),
        headers={"Authorization": "Bearer s3cret"},
    )  # no Content-Length
    assert chunked.status_code == 413
    bad = httpx.post(server.url + "/query", content=b"\x00" * 12, headers={"Authorization": "Bearer s3cret"})
    assert bad.status_code == 422 and "safetensors" in bad.text


def test_wire_format_is_safetensors_with_json_metadata():
    import hf_clipadapt.craft as craft
    import hf_clipadapt.craft.serve  # noqa: F401  (importing the module must not shadow the function)

    assert callable(craft.serve_black_box) and craft.serve_black_box.__name__ == "serve_black_box"
    data = pack({"a": np.arange(6, dtype=np.float32).reshape(2, 3)}, {"class_names": ["x", "y"]})
    arrays, meta = unpack(data)
    np.testing.assert_array_equal(arrays["a"], np.arange(6).reshape(2, 3))
    assert meta == {"class_names": ["x", "y"]}
    with pytest.raises(ValueError, match="not valid safetensors"):
        unpack(b"\x80\x04\x95 a pickle")


def test_unreachable_server_retries_then_says_what_failed(monkeypatch):
    import httpx

    attempts = []
    original = httpx.Client.request
    monkeypatch.setattr(httpx.Client, "request", lambda self, *a, **k: attempts.append(a) or original(self, *a, **k))
    remote = RemoteBlackBox(f"http://127.0.0.1:{free_port()}", retries=2, backoff=0.01)
    with pytest.raises(BlackBoxConnectionError, match=r"could not reach the black box .* after 3 attempts"):
        remote.upload_images(np.zeros((1, 3, 30, 30), np.float32))
    assert len(attempts) == 3


def test_a_run_whose_server_goes_away_saves_its_state_and_resumes(local, tmp_path):
    server = BlackBoxServer(local, token="t").start()
    remote = RemoteBlackBox(server.url, token="t", retries=1, backoff=0.01)
    model = CraFTForImageClassification.from_black_box(remote, CLASSES, intrinsic_dim=8, refine_hidden=4)
    x, y = torch.randn(6, 3, 30, 30), torch.tensor([0, 1, 2, 0, 1, 2])
    args = CraFTTrainingArguments(budget=33, population=10, batch_size=3, output_dir=str(tmp_path))  # 3 × (10 + 1)
    from hf_clipadapt.craft import CollaborativeLoop

    loop = CollaborativeLoop(model, remote, x, y, args)
    loop.run(max_generations=1)
    server.stop()
    with pytest.raises(BlackBoxConnectionError, match=r"before generation 2 of 3 \(11 queries spent\).*saved in"):
        loop.run()
    assert remote.queries == 11 and loop.generation == 1
    with BlackBoxServer(local, token="t") as again:
        box = RemoteBlackBox(again.url, token="t")
        resumed = CollaborativeLoop(
            CraFTForImageClassification.from_black_box(box, CLASSES, intrinsic_dim=8, refine_hidden=4), box, x, y, args
        )
        resumed.run(resume_from_checkpoint=str(tmp_path))
        assert box.queries == 33 and resumed.generation == 3


def test_a_model_trained_over_http_reloads_from_its_url_once_confirmed(local, tmp_path, monkeypatch):
    with BlackBoxServer(local, token="t") as server:
        remote = RemoteBlackBox(server.url, token="t")
        model = CraFTForImageClassification.from_black_box(remote, CLASSES, intrinsic_dim=8, refine_hidden=4)
        with torch.no_grad():
            model.prompt.z.normal_(generator=torch.Generator().manual_seed(0))
        model.config.is_fitted = True
        model.save_pretrained(tmp_path / "saved")
        assert model.config.black_box == server.url and model.config.base_model_name_or_path is None
        assert server.url not in (tmp_path / "saved" / "README.md").read_text()  # the card does not publish it
        monkeypatch.setenv("HF_CLIPADAPT_BLACK_BOX_TOKEN", "t")
        assert (
            CraFTForImageClassification.from_pretrained(tmp_path / "saved").black_box is None
        )  # a saved URL is not contacted
        monkeypatch.setenv("HF_CLIPADAPT_BLACK_BOX_URL", server.url)  # the user confirms it beside the token
        reloaded = CraFTForImageClassification.from_pretrained(tmp_path / "saved", connect=True)
        assert isinstance(reloaded.black_box, RemoteBlackBox)
        x = torch.randn(3, 3, 30, 30)
        assert torch.equal(reloaded(pixel_values=x).logits, model(pixel_values=x).logits)
