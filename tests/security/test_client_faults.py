"""Issue 22, item 5: the client and the collaborative loop survive a faulty or restarted server.

Timeouts and garbage answers come from an `httpx.MockTransport` (deterministic, no
sleeping); the restart is a real uvicorn server on 127.0.0.1 stopped and started again
on the same port. Each test fails on the client and loop before these fixes.
"""

import re

import httpx
import pytest
import torch

from hf_clipadapt.clip import CLIPBackbone
from hf_clipadapt.craft import (
    BlackBoxConnectionError,
    BlackBoxError,
    BlackBoxServer,
    CollaborativeLoop,
    CraFTForImageClassification,
    CraFTTrainingArguments,
    LocalBlackBox,
    RemoteBlackBox,
)
from hf_clipadapt.craft.wire import pack
from hf_clipadapt.testing_utils import tiny_clip_model, tiny_clip_tokenizer, tiny_image_processor

CLASSES = ["cat", "dog", "car"]
# 3 generations of λ + 1 = 11 queries (10 candidates, then R's augmented view)
ARGS = {"budget": 33, "population": 10, "sigma": 0.5, "batch_size": 3}


@pytest.fixture(scope="module")
def clip():
    return CLIPBackbone(tiny_clip_model(), tiny_clip_tokenizer(), tiny_image_processor())


def shots():
    g = torch.Generator().manual_seed(0)
    return torch.randn(6, 3, 30, 30, generator=g), torch.tensor([0, 1, 2, 0, 1, 2])


def mocked(local, query_answer):
    """A RemoteBlackBox whose /info, /context and /images are answered by `local`, and /query by
    `query_answer(request)` (which may raise an httpx error)."""
    calls = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if request.url.path == "/info":
            return httpx.Response(200, json={**local.info(), "queries": 0, "budget": None})
        if request.url.path == "/context":
            return httpx.Response(200, content=pack({"p0": local.context_embeddings("a photo of a")}))
        if request.url.path == "/images":
            return httpx.Response(200, json={"handle": "h"})
        return query_answer(request)

    remote = RemoteBlackBox("http://127.0.0.1:9", retries=2, backoff=0.001)
    remote._client = httpx.Client(base_url=remote.name, transport=httpx.MockTransport(handle))
    return remote, calls


def test_a_read_timeout_is_retried_then_wrapped_refunded_and_the_loop_saves_a_resumable_run(
    clip, tmp_path, monkeypatch
):
    def timeout(request):
        raise httpx.ReadTimeout("timed out", request=request)

    local = LocalBlackBox(clip)
    remote, calls = mocked(local, timeout)
    with pytest.raises(BlackBoxConnectionError, match="after 3 attempts.*ReadTimeout"):
        remote.query(local.context_embeddings("a photo of a"), "h", CLASSES)
    assert calls.count("/query") == 3 and remote.queries == 0  # retried (bounded), and the charge given back

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))  # the default run folder lands here
    x, y = shots()
    model = CraFTForImageClassification.from_black_box(remote, CLASSES, intrinsic_dim=8, refine_hidden=4)
    loop = CollaborativeLoop(model, remote, x, y, CraFTTrainingArguments(**ARGS))  # no output_dir
    with pytest.raises(BlackBoxConnectionError, match=r"before generation 1 of 3 .*saved in .*run\(resume_from"):
        loop.run()
    assert remote.queries == 0 and loop.output_dir.startswith(str(tmp_path))
    assert (tmp_path / loop.output_dir / "craft-checkpoint").is_dir()


def test_a_garbage_200_answer_is_a_black_box_error_not_a_bare_value_error(clip):
    local = LocalBlackBox(clip)
    remote, _ = mocked(local, lambda request: httpx.Response(200, content=b"<html>hello</html>"))
    with pytest.raises(BlackBoxError, match="unreadable") as caught:
        remote.query(local.context_embeddings("a photo of a"), "h", CLASSES)
    assert not isinstance(caught.value, ValueError)
    broken_info, _ = mocked(local, None)
    broken_info._client = httpx.Client(
        base_url=broken_info.name, transport=httpx.MockTransport(lambda r: httpx.Response(200, text="{not json"))
    )
    with pytest.raises(BlackBoxError, match="unreadable"):
        _ = broken_info.text_width


def uninterrupted(clip):
    x, y = shots()
    box = LocalBlackBox(clip)
    model = CraFTForImageClassification.from_black_box(box, CLASSES, intrinsic_dim=8, refine_hidden=4)
    CollaborativeLoop(model, box, x, y, CraFTTrainingArguments(**ARGS)).run()
    return model


def assert_same_model(a, b):
    assert torch.equal(a.prompt.z, b.prompt.z)
    for (name, p), q in zip(a.refiner.state_dict().items(), b.refiner.state_dict().values()):
        assert torch.equal(p, q), name


def stop_mid_run(clip, tmp_path, budget=None):
    """A run over HTTP whose server is killed after generation 1: (loop, remote, port, resume folder)."""
    x, y = shots()
    server = BlackBoxServer(LocalBlackBox(clip), token="t").start()
    remote = RemoteBlackBox(server.url, token="t", retries=1, backoff=0.01, budget=budget)
    model = CraFTForImageClassification.from_black_box(remote, CLASSES, intrinsic_dim=8, refine_hidden=4)
    loop = CollaborativeLoop(model, remote, x, y, CraFTTrainingArguments(**ARGS, output_dir=str(tmp_path)))
    loop.run(max_generations=1)
    server.stop()
    with pytest.raises(BlackBoxConnectionError, match="resume with") as caught:
        loop.run()
    where = re.search(r"run\(resume_from_checkpoint='([^']+)'\)", str(caught.value)).group(1)
    return loop, remote, server.port, where


def test_after_a_server_restart_the_same_loop_resumes_to_the_uninterrupted_result(clip, tmp_path):
    loop, remote, port, where = stop_mid_run(clip, tmp_path)
    with BlackBoxServer(LocalBlackBox(clip), token="t", port=port):  # a new process: its image cache is empty
        loop.run(resume_from_checkpoint=where)  # the old handle is unknown there: the loop uploads again
    assert loop.generation == 3 and remote.queries == 33
    assert_same_model(loop.model, uninterrupted(clip))


def test_a_resumed_plan_does_not_shrink_with_the_client_s_own_budget_counter(clip, tmp_path):
    loop, remote, port, where = stop_mid_run(clip, tmp_path, budget=33)
    assert remote.queries == 11 and remote.remaining == 22
    with BlackBoxServer(LocalBlackBox(clip), token="t", port=port):
        model = CraFTForImageClassification.from_black_box(remote, CLASSES, intrinsic_dim=8, refine_hidden=4)
        x, y = shots()
        resumed = CollaborativeLoop(model, remote, x, y, CraFTTrainingArguments(**ARGS, output_dir=str(tmp_path)))
        resumed.run(resume_from_checkpoint=where)
    assert resumed.generation == 3 and remote.queries == 33  # not 2 generations: the run's own plan
    assert_same_model(model, uninterrupted(clip))


def test_without_output_dir_a_run_still_leaves_a_checkpoint_to_resume_from(clip, tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    x, y = shots()
    box = LocalBlackBox(clip)
    model = CraFTForImageClassification.from_black_box(box, CLASSES, intrinsic_dim=8, refine_hidden=4)
    first = CollaborativeLoop(model, box, x, y, CraFTTrainingArguments(**ARGS))
    first.run(max_generations=2)
    assert first.output_dir is not None and (tmp_path / first.output_dir / "craft-checkpoint").is_dir()
    box = LocalBlackBox(clip)
    model = CraFTForImageClassification.from_black_box(box, CLASSES, intrinsic_dim=8, refine_hidden=4)
    CollaborativeLoop(model, box, x, y, CraFTTrainingArguments(**ARGS)).run(resume_from_checkpoint=first.output_dir)
    assert_same_model(model, uninterrupted(clip))
