"""The shared training path on a tiny model: it learns, resumes exactly, runs the same
on 2 processes as on 1, stays quiet off a terminal, and checkpoints only what it trains."""

import pytest
import torch
from safetensors.torch import load_file
from training_tiny import RowsDataset, tiny_model, trained_weights

from hf_clipadapt.testing_utils import assert_close_scaled, run_distributed
from hf_clipadapt.training import AdaptationTrainer, AdaptationTrainingArguments, stack_collate, train_model


def _args(**kwargs):
    defaults = dict(
        per_device_train_batch_size=8,
        learning_rate=0.5,
        num_train_epochs=1,
        logging_steps=1,
        optim="sgd",
        lr_scheduler_type="constant",
    )
    return AdaptationTrainingArguments(**{**defaults, **kwargs})


def _loss(model, data) -> float:
    batch = stack_collate([data[i] for i in range(len(data))])
    with torch.no_grad():
        return model(**batch).loss.item()


def test_loss_decreases_and_only_trainable_parameters_move():
    model, data = tiny_model(), RowsDataset(32)
    frozen = model.frozen.weight.detach().clone()
    before = _loss(model, data)
    history = train_model(model, data, _args(num_train_epochs=5))
    assert _loss(model, data) < 0.8 * before
    assert torch.equal(model.frozen.weight, frozen)
    assert sum("loss" in h for h in history) == 5 * 4  # logging_steps=1: every optimizer step


def test_a_model_with_nothing_to_train_is_refused():
    model = tiny_model().requires_grad_(False)
    with pytest.raises(ValueError, match="nothing to train"):
        AdaptationTrainer(model=model, args=_args(), train_dataset=RowsDataset(8))


def test_a_batch_without_labels_gets_a_clear_error():
    data = [{"features": torch.randn(6)} for _ in range(8)]
    with pytest.raises(ValueError, match="returned no loss"):
        train_model(tiny_model(), data, _args())


def test_tuple_rows_are_passed_positionally():
    data = torch.utils.data.TensorDataset(RowsDataset(16).x, RowsDataset(16).y)
    model = tiny_model()
    before = trained_weights(model)["head.weight"]
    train_model(model, data, _args())
    assert not torch.equal(model.head.weight, before)


def test_sgd_momentum_and_parameter_groups_reach_the_optimizer():
    class HeadBiasSlower(AdaptationTrainer):
        def parameter_groups(self, model):
            return [{"params": [model.head.weight]}, {"params": [model.head.bias], "lr_scale": 0.1}]

    trainer = HeadBiasSlower(
        model=tiny_model(), args=_args(momentum=0.9, nesterov=True, weight_decay=1e-3), train_dataset=RowsDataset(8)
    )
    opt = trainer.create_optimizer()
    assert isinstance(opt, torch.optim.SGD)
    assert [g["lr"] for g in opt.param_groups] == [0.5, 0.05]
    assert all(g["momentum"] == 0.9 and g["nesterov"] and g["weight_decay"] == 1e-3 for g in opt.param_groups)
    with pytest.raises(ValueError, match="optim='sgd'"):
        AdaptationTrainingArguments(momentum=0.9, optim="adamw_torch")


def test_progress_bars_follow_the_terminal_and_the_environment(monkeypatch):
    monkeypatch.delenv("HF_CLIPADAPT_DISABLE_PROGRESS_BARS", raising=False)
    assert AdaptationTrainingArguments().disable_tqdm  # pytest captures stderr: not a terminal
    monkeypatch.setattr("sys.stderr.isatty", lambda: True, raising=False)
    assert not AdaptationTrainingArguments().disable_tqdm
    monkeypatch.setenv("HF_CLIPADAPT_DISABLE_PROGRESS_BARS", "1")
    assert AdaptationTrainingArguments().disable_tqdm
    assert not AdaptationTrainingArguments(disable_tqdm=False).disable_tqdm  # an explicit choice wins


def test_checkpoints_need_an_output_dir():
    with pytest.raises(ValueError, match="output_dir"):
        AdaptationTrainingArguments(save_strategy="steps")


def test_resume_from_a_checkpoint_equals_the_uninterrupted_run(tmp_path):
    # 8 optimizer steps over 2 epochs, momentum (optimizer state) and a linear schedule (scheduler state)
    common = dict(num_train_epochs=2, momentum=0.9, lr_scheduler_type="linear", save_strategy="steps", save_steps=3)
    full = tiny_model()
    train_model(full, RowsDataset(32), _args(output_dir=str(tmp_path / "full"), **common))
    checkpoint = tmp_path / "full" / "checkpoint-3"
    saved = load_file(checkpoint / "model.safetensors")
    assert set(saved) == set(trained_weights(full))  # the trained part only: no frozen tensor
    assert (checkpoint / "optimizer.pt").is_file() and (checkpoint / "rng_state.pth").is_file()

    resumed = tiny_model(seed=123)  # different start: all trained state must come from the checkpoint
    resumed.frozen.load_state_dict(full.frozen.state_dict())  # the frozen part is the model's own
    train_model(
        resumed,
        RowsDataset(32),
        _args(output_dir=str(tmp_path / "resumed"), **common),
        resume_from_checkpoint=str(checkpoint),
    )
    for name, value in trained_weights(full).items():
        # same ops in the same order on the same machine: bitwise equal
        assert torch.equal(trained_weights(resumed)[name], value), name


def _train_and_save(out_file: str, num_processes: int):
    import torch

    from hf_clipadapt.training import train_model

    torch.set_num_threads(1)
    model = tiny_model()
    # global batch 8 either way: 2 processes × 4, or 1 process × 4 × 2 accumulated micro-batches
    args = _args(per_device_train_batch_size=4, gradient_accumulation_steps=3 - num_processes, momentum=0.9)
    train_model(model, RowsDataset(32), args)
    assert args.world_size == num_processes
    if args.process_index == 0:
        torch.save(trained_weights(model), out_file)


def _two_processes(out_file: str):
    _train_and_save(out_file, 2)


def test_two_processes_equal_one_process_with_the_same_global_batch(tmp_path):
    two, one = str(tmp_path / "two.pt"), str(tmp_path / "one.pt")
    run_distributed(_two_processes, args=(two,), num_processes=2)  # the unused head must not break DDP
    _train_and_save(one, 1)
    p2, p1, start = torch.load(two), torch.load(one), trained_weights(tiny_model())
    assert not torch.equal(p1["head.weight"], start["head.weight"])
    assert torch.equal(p1["unused.weight"], start["unused.weight"])  # no gradient, no step
    for name in p1:
        assert_close_scaled(p2[name], p1[name], rtol=1e-5, msg=name)


def test_tensor_rows_fetch_whole_batches_equal_to_per_sample_rows():
    from hf_clipadapt.training import TensorRows

    x, y = torch.randn(10, 3), torch.arange(10)
    rows = TensorRows(x, y)
    batch = stack_collate(rows.__getitems__([4, 1, 7]))
    per_sample = stack_collate([rows[i] for i in (4, 1, 7)])
    assert all(torch.equal(a, b) for a, b in zip(batch, per_sample)) and len(rows) == 10
    with pytest.raises(ValueError, match="same first dimension"):
        TensorRows(x, y[:5])


def test_training_prints_nothing_to_stdout_without_bars(capsys):
    train_model(tiny_model(), RowsDataset(16), _args(disable_tqdm=True))
    assert capsys.readouterr().out == ""  # Trainer's PrinterCallback is off; logs stay in log_history
