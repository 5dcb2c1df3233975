"""Issue 22, item 4-5: one authenticated client must not be able to take the black-box server down.

A real uvicorn server on 127.0.0.1 (port 0), the tiny CLIP, bounded loops that stop by
themselves. Each test fails on the server before `ServeLimits` (no caps, torch work on
the event loop, an unbounded feature cache, 500s, charges before validation, an owner
path in /info, any address bound without a token).
"""

import json
import threading
import time

import httpx
import numpy as np
import pytest
import torch

from hf_clipadapt.clip import CLIPBackbone
from hf_clipadapt.craft import BlackBoxServer, LocalBlackBox, RemoteBlackBox, UnknownImagesError
from hf_clipadapt.craft.wire import pack, unpack
from hf_clipadapt.testing_utils import tiny_clip_model, tiny_clip_tokenizer, tiny_image_processor

CLASSES = ["cat", "dog", "car"]
TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def clip():
    return CLIPBackbone(tiny_clip_model(), tiny_clip_tokenizer(), tiny_image_processor())


class SlowBox(LocalBlackBox):
    """A black box whose scoring takes `delay` seconds (a large model's query), signalling when it starts."""

    def __init__(self, *args, delay: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.delay, self.started = delay, threading.Event()

    def _score_contexts(self, *args):
        self.started.set()
        time.sleep(self.delay)
        return super()._score_contexts(*args)


def images(n=2, seed=0, channels=3):
    return torch.randn(n, channels, 30, 30, generator=torch.Generator().manual_seed(seed)).numpy()


def post(url, path, **kwargs):
    return httpx.post(url + path, headers=AUTH, timeout=30, **kwargs)


def test_oversized_context_and_pxk_are_refused_while_info_answers_under_100ms(clip):
    box = SlowBox(clip, delay=1.5)
    with BlackBoxServer(box, token=TOKEN) as server:
        handle = post(server.url, "/images", content=pack({"pixel_values": images()})).json()["handle"]
        p0 = box.context_embeddings("a photo of a")
        slow = threading.Thread(
            target=post,
            args=(server.url, "/query"),
            kwargs={"content": pack({"contexts": p0[None]}, {"images": handle, "class_names": CLASSES})},
        )
        slow.start()
        assert box.started.wait(10)  # the slow query is running on the server now
        latencies = []
        with httpx.Client(base_url=server.url, headers=AUTH, timeout=5) as client:  # built outside the timing
            client.get("/info")
            for _ in range(5):  # while the query runs, /info still answers (it waits for no torch work)
                start = time.perf_counter()
                assert client.get("/info").status_code == 200
                latencies.append(time.perf_counter() - start)
        assert slow.is_alive(), "the slow query finished before /info was measured: the test proves nothing"
        assert max(latencies) < 0.1, latencies
        queries = box.queries
        long_text = post(server.url, "/context", json={"text": "a photo of a " * 400})  # 5,200 characters
        assert long_text.status_code == 413 and "max_text_chars=1000" in long_text.text
        many = np.repeat(p0[None], 100, axis=0)  # P×K = 100 × 100 = 10,000 text sequences in ~60 kB
        wide = post(
            server.url,
            "/query",
            content=pack({"contexts": many}, {"images": handle, "class_names": [f"c{i}" for i in range(100)]}),
        )
        assert wide.status_code == 413 and "max_prompt_classes=4096" in wide.text
        slow.join(10)
        assert box.queries == queries == 1  # only the slow, valid query was charged; the refused ones cost nothing


def test_malformed_requests_get_4xx_with_short_messages_and_cost_nothing(clip):
    box = LocalBlackBox(clip)
    box.name = "/home/owner/private/models/clip-vit"  # loaded from the owner's disk
    with BlackBoxServer(box, token=TOKEN) as server:
        info = httpx.get(server.url + "/info", headers=AUTH).json()
        assert info["name"] is None and "/home/owner" not in json.dumps(info)
        handle = post(server.url, "/images", content=pack({"pixel_values": images()})).json()["handle"]
        p0 = box.context_embeddings("a photo of a")
        nan = p0.copy()
        nan[0, 0] = np.nan
        inf = p0 * np.float32(np.inf)
        nested = "[" * 100_000 + "]" * 100_000
        answers = {
            "nan context": post(
                server.url, "/query", content=pack({"contexts": nan}, {"images": handle, "class_names": CLASSES})
            ),
            "inf context": post(
                server.url, "/query", content=pack({"contexts": inf}, {"images": handle, "class_names": CLASSES})
            ),
            "1-channel images": post(server.url, "/images", content=pack({"pixel_values": images(channels=1)})),
            "5-channel images": post(server.url, "/images", content=pack({"pixel_values": images(channels=5)})),
            "nested JSON /context": post(server.url, "/context", content=nested.encode()),
            "nested JSON /query_texts": post(
                server.url, "/query_texts", content=('{"texts":' + nested + "}").encode()
            ),
            "unknown handle": post(
                server.url, "/query", content=pack({"contexts": p0}, {"images": "nope", "class_names": CLASSES})
            ),
            "class names not a list": post(
                server.url, "/query", content=pack({"contexts": p0}, {"images": handle, "class_names": "cat"})
            ),
            "text prompts for an unknown handle": post(
                server.url, "/query_texts", json={"texts": CLASSES, "images": "nope"}
            ),
        }
        for what, answer in answers.items():
            assert 400 <= answer.status_code < 500, (what, answer.status_code, answer.text)
            assert len(answer.text) < 700 and "Traceback" not in answer.text and ".py" not in answer.text, what
        assert answers["unknown handle"].status_code == 404 and "upload" in answers["unknown handle"].text
        assert box.queries == 0  # nothing invalid was charged
        ok = post(server.url, "/query", content=pack({"contexts": p0}, {"images": handle, "class_names": CLASSES}))
        assert ok.status_code == 200 and unpack(ok.content)[0]["scores"].shape == (2, 3) and box.queries == 1


def test_feature_cache_stays_bounded_over_200_distinct_uploads(clip):
    from hf_clipadapt.craft import ServeLimits

    box = LocalBlackBox(clip)
    limits = ServeLimits(max_cached_uploads=16, max_cached_images=40, max_images_per_upload=4)
    with BlackBoxServer(box, token=TOKEN, limits=limits) as server:
        remote = RemoteBlackBox(server.url, token=TOKEN)
        handles = []
        for i in range(200):
            handles.append(remote.upload_images(images(2, seed=i)))
            assert box.cached_uploads <= 16 and box.cached_images <= 40
        assert len(set(handles)) == 200 and box.cached_uploads == 16 and box.cached_images == 32
        p0 = remote.context_embeddings("a photo of a")
        assert remote.query(p0, handles[-1], CLASSES).shape == (2, 3)  # the newest are kept
        with pytest.raises(UnknownImagesError, match="upload"):  # the oldest were evicted
            remote.query(p0, handles[0], CLASSES)
        assert remote.queries == 1 and box.queries == 1
        too_many = post(server.url, "/images", content=pack({"pixel_values": images(5)}))
        assert too_many.status_code == 413 and "max_images_per_upload=4" in too_many.text


def test_limits_are_published_and_a_large_query_is_split_to_fit_them(clip):
    from hf_clipadapt.craft import ServeLimits

    box = LocalBlackBox(clip)
    limits = ServeLimits(max_prompts=2, max_prompt_classes=6)
    with BlackBoxServer(box, token=TOKEN, limits=limits) as server:
        remote = RemoteBlackBox(server.url, token=TOKEN)
        assert remote.info["limits"] == limits.as_dict()
        handle = remote.upload_images(images(3))
        p0 = remote.context_embeddings("a photo of a")
        contexts = np.stack([p0 * s for s in (1.0, 1.1, 1.2, 1.3, 1.4)])  # P=5 > max_prompts=2
        scores = remote.query(contexts, handle, CLASSES)
        local = LocalBlackBox(clip)
        same = local.upload_images(images(3))
        in_twos = np.concatenate([local.query(contexts[i : i + 2], same, CLASSES) for i in (0, 2, 4)])
        np.testing.assert_array_equal(scores, in_twos)  # sent as 3 requests of at most 2 prompts
        assert remote.queries == 5 and box.queries == 5


def test_binding_without_a_token_is_loopback_only_and_warned(clip):
    from hf_clipadapt.craft import serve_black_box

    box = LocalBlackBox(clip)
    with pytest.raises(ValueError, match="without a token"):
        BlackBoxServer(box, host="0.0.0.0")
    with pytest.raises(ValueError, match="without a token"):
        serve_black_box(box, host="0.0.0.0", port=1)  # refused before anything is bound
    with pytest.warns(UserWarning, match="without a token"):
        server = BlackBoxServer(box, host="127.0.0.1")
    server.app.state.executor.shutdown()
    server._socket.close()


def test_requests_beyond_max_pending_are_turned_away_until_the_worker_is_free(clip):
    from hf_clipadapt.craft import ServeLimits

    box = SlowBox(clip, delay=1.0)
    with BlackBoxServer(box, token=TOKEN, limits=ServeLimits(max_pending=1)) as server:
        handle = post(server.url, "/images", content=pack({"pixel_values": images()})).json()["handle"]
        payload = pack(
            {"contexts": box.context_embeddings("a photo of a")}, {"images": handle, "class_names": CLASSES}
        )
        slow = threading.Thread(target=post, args=(server.url, "/query"), kwargs={"content": payload})
        slow.start()
        assert box.started.wait(10)
        busy = post(server.url, "/query_texts", json={"texts": CLASSES, "images": handle})
        assert busy.status_code == 503 and "max_pending=1" in busy.text
        slow.join(10)
        assert post(server.url, "/query_texts", json={"texts": CLASSES, "images": handle}).status_code == 200
        assert box.queries == 2  # the turned-away request cost nothing
