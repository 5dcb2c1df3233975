import pytest
import torch

from hf_clipadapt.tzsl import ZSLData


def synthetic_zsl(
    seed: int = 0,
    num_seen: int = 8,
    num_unseen: int = 3,
    dim: int = 16,
    att_dim: int = 5,
    per_class: int = 60,
    noise: float = 0.3,
) -> ZSLData:
    """Gaussian clusters whose means are a fixed linear map of random class attributes,
    so that the attribute -> feature relation learnt on seen classes transfers."""
    g = torch.Generator().manual_seed(seed)
    C = num_seen + num_unseen
    attributes = torch.randn(C, att_dim, generator=g)
    W = torch.randn(att_dim, dim, generator=g)
    means = attributes @ W

    def draw(classes):
        y = torch.tensor(classes).repeat_interleave(per_class)
        return means[y] + noise * means.std() * torch.randn(len(y), dim, generator=g), y

    seen, unseen = list(range(num_seen)), list(range(num_seen, C))
    x_tr, y_tr = draw(seen)
    x_ts, y_ts = draw(seen)
    x_tu, y_tu = draw(unseen)
    return ZSLData(x_tr, y_tr, x_ts, y_ts, x_tu, y_tu, attributes, seen, unseen, [f"c{i}" for i in range(C)])


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """The GAN's many small ops slow down badly when two OpenMP threads compete on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_data():
    return synthetic_zsl()


@pytest.fixture(scope="session")
def tiny_kwargs():
    """Network and schedule sizes small enough for a few seconds on one CPU core."""
    return dict(TINY)


TINY = dict(
    hidden_dim=64,
    decoder_hidden_dim=32,
    epochs=3,
    steps_per_epoch=20,
    batch_size=32,
    syn_num=60,
    decoder_pretrain_epochs=20,
    cls_epochs=20,
    lr=1e-3,
)
