"""The supervised Trainer and the MetricLogger: learning, accumulation, clipping, early stopping,
non-finite losses, determinism, exact resume, callbacks, mixed precision and metric logs."""

import json
import math
import shutil
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, TensorDataset

import papers.core.trainer as trainer_module
from papers.core.io import CheckpointError, load_checkpoint
from papers.core.metrics import MetricLogger
from papers.core.trainer import Callback, EarlyStopping, NonFiniteLossError, Trainer

TRUE_WEIGHTS = torch.tensor([[1.0], [-2.0], [0.5], [3.0]])


def regression_data(n=256, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=generator)
    y = x @ TRUE_WEIGHTS + 0.3 * torch.sin(3 * x[:, :1])
    return x, y


def mlp(seed=0, dropout=0.0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Dropout(dropout), nn.Linear(16, 1))


def mse(model, batch):
    x, y = batch
    return F.mse_loss(model(x), y)


def mse_and_mae(model, batch):
    x, y = batch
    prediction = model(x)
    return F.mse_loss(prediction, y), {"mae": (prediction - y).abs().mean()}


def sgd_trainer(model, data, lr=0.05, **kwargs):
    kwargs.setdefault("progress", False)
    return Trainer(
        model, torch.optim.SGD(model.parameters(), lr=lr), kwargs.pop("loss_fn", mse), data, **kwargs
    )


def flat_weights(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


class At(Callback):
    """Run ``action(trainer)`` at the end of step ``step``."""

    def __init__(self, step, action):
        self.step, self.action = step, action

    def on_step_end(self, trainer):
        if trainer.step == self.step:
            self.action(trainer)


# ------------------------------------------------------------------------------------------ learning


def test_learns_a_small_regression(tmp_path):
    model = mlp()
    logger = MetricLogger(tmp_path)
    trainer = Trainer(
        model,
        torch.optim.Adam(model.parameters(), lr=1e-2),
        mse,
        regression_data(),
        batch_size=32,
        max_steps=300,
        val_data=regression_data(128, seed=1),
        val_every=100,
        logger=logger,
        log_every=10,
        progress=False,
    )
    metrics = trainer.fit()
    losses = [row["loss"] for row in logger.rows() if "loss" in row]
    assert losses[0] / losses[-1] > 50, losses
    assert metrics["step"] == 300 and metrics["val_loss"] < 0.1 * losses[0]
    assert [row["step"] for row in logger.rows() if "val_loss" in row] == [100, 200, 300]


@pytest.mark.parametrize("samples", [96, 90])  # 90: the last global batch holds 26 samples (8 + 8 + 8 + 2)
def test_accumulated_micro_batches_equal_one_big_batch(samples):
    data = regression_data(samples)
    big = sgd_trainer(mlp(), data, batch_size=32, epochs=3, log_every=1)
    small = sgd_trainer(mlp(), data, batch_size=8, accumulation_steps=4, epochs=3, log_every=1)
    big_metrics, small_metrics = big.fit(), small.fit()
    assert big.step == small.step == 9
    assert torch.allclose(flat_weights(big.model), flat_weights(small.model), atol=1e-6, rtol=0)
    assert small_metrics["loss"] == pytest.approx(big_metrics["loss"], rel=1e-6)
    unaccumulated = sgd_trainer(mlp(), data, batch_size=8, max_steps=9)
    unaccumulated.fit()
    assert not torch.allclose(flat_weights(big.model), flat_weights(unaccumulated.model), atol=1e-4)


def test_gradient_clipping_bounds_the_global_norm():
    x, y = regression_data(64)
    data = (x, 100 * y)  # a large loss, so a large gradient

    def update_norm(grad_clip):
        model = mlp()
        before = flat_weights(model)
        trainer = sgd_trainer(model, data, lr=1.0, batch_size=64, max_steps=1, grad_clip=grad_clip)
        metrics = trainer.fit()
        return (flat_weights(model) - before).norm().item(), metrics

    clipped, metrics = update_norm(0.5)
    unclipped, _ = update_norm(None)
    assert clipped == pytest.approx(0.5, rel=1e-4)  # SGD with lr 1 moves by exactly the clipped gradient
    assert metrics["grad_norm"] == pytest.approx(unclipped, rel=1e-4) and unclipped > 50


def test_early_stopping_stops_when_validation_stalls():
    data = regression_data(64)
    trainer = sgd_trainer(
        mlp(), data, lr=0.0, batch_size=16, epochs=50, val_data=data, early_stopping=EarlyStopping(patience=3)
    )
    trainer.fit()
    assert trainer.should_stop and trainer.epoch == 4  # one baseline validation, then three without progress


def test_early_stopping_modes_and_min_delta():
    trainer = SimpleNamespace(should_stop=False)
    stopper = EarlyStopping(monitor="val_acc", patience=2, min_delta=0.05, mode="max")
    for value in (0.5, 0.6, 0.62, 0.7, 0.71):
        stopper.on_validation_end(trainer, {"val_acc": value})
        assert not trainer.should_stop
    stopper.on_validation_end(trainer, {"val_acc": float("nan")})
    assert trainer.should_stop and stopper.best == 0.7
    with pytest.raises(KeyError, match="monitors 'val_acc'"):
        stopper.on_validation_end(trainer, {"val_loss": 1.0})
    with pytest.raises(ValueError, match="mode"):
        EarlyStopping(mode="lowest")


# ------------------------------------------------------------------------------ failures and errors


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_loss_raises_and_keeps_the_last_checkpoint(tmp_path, bad):
    calls = []

    def loss_fn(model, batch):
        calls.append(1)
        loss = mse(model, batch)
        return loss * bad if len(calls) >= 8 else loss

    saved = {}
    keep_bytes = At(6, lambda trainer: saved.update(data=(tmp_path / "last.pt").read_bytes()))
    trainer = sgd_trainer(
        mlp(),
        regression_data(),
        loss_fn=loss_fn,
        batch_size=16,
        max_steps=40,
        checkpoint_dir=tmp_path,
        checkpoint_every=5,
        callbacks=[keep_bytes],
    )
    with pytest.raises(NonFiniteLossError, match=f"^non-finite loss {bad} at step 8$") as error:
        trainer.fit()
    assert isinstance(error.value, FloatingPointError)
    assert (tmp_path / "last.pt").read_bytes() == saved["data"]
    checkpoint = load_checkpoint(tmp_path / "last.pt")
    assert checkpoint["step"] == 5 and all(v.isfinite().all() for v in checkpoint["model"].values())


def test_bad_checkpoints_are_clear_errors_and_left_untouched(tmp_path):
    data = regression_data(64)
    (tmp_path / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot load checkpoint"):
        sgd_trainer(mlp(), data, batch_size=16, max_steps=4, checkpoint_dir=tmp_path).fit()
    assert (tmp_path / "last.pt").read_bytes() == b"not a checkpoint"

    good = tmp_path / "good"
    sgd_trainer(mlp(), data, batch_size=16, max_steps=4, checkpoint_dir=good).fit()
    before = (good / "last.pt").read_bytes()
    with pytest.raises(CheckpointError, match="global_batch_size=16, this trainer has 32"):
        sgd_trainer(mlp(), data, batch_size=32, max_steps=4, checkpoint_dir=good).fit()
    wider = nn.Sequential(nn.Linear(4, 32), nn.Tanh(), nn.Linear(32, 1))
    with pytest.raises(CheckpointError, match="does not fit this trainer: Error.*size mismatch"):
        sgd_trainer(wider, data, batch_size=16, max_steps=4).load_checkpoint(good / "last.pt")
    assert (good / "last.pt").read_bytes() == before


def test_invalid_arguments_and_loss_are_clear_errors():
    data = regression_data(64)
    with pytest.raises(ValueError, match="give epochs, max_steps or both"):
        sgd_trainer(mlp(), data, batch_size=16)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        sgd_trainer(mlp(), data, batch_size=0, epochs=1)
    with pytest.raises(ValueError, match="need val_data"):
        sgd_trainer(mlp(), data, batch_size=16, epochs=1, early_stopping=EarlyStopping())
    with pytest.raises(ValueError, match="fewer than one global batch"):
        sgd_trainer(mlp(), data, batch_size=128, epochs=1, drop_last=True)
    per_sample = sgd_trainer(
        mlp(),
        data,
        batch_size=16,
        epochs=1,
        loss_fn=lambda model, batch: F.mse_loss(model(batch[0]), batch[1], reduction="none"),
    )
    with pytest.raises(ValueError, match=r"scalar tensor .* shape \(16, 1\)"):
        per_sample.fit()


# ------------------------------------------------------------------------- determinism and resume


def test_same_seed_gives_identical_weights():
    def train(seed):
        model = mlp(seed, dropout=0.2)
        sgd_trainer(model, regression_data(), batch_size=16, epochs=3, seed=seed).fit()
        return flat_weights(model)

    assert torch.equal(train(1), train(1))
    assert not torch.equal(train(1), train(2))


def full_featured_trainer(model, folder, **kwargs):
    """Adam, a scheduler, dropout, accumulation, clipping, validation, early stopping and a logger."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    return Trainer(
        model,
        optimizer,
        mse_and_mae,
        regression_data(200),
        batch_size=8,
        accumulation_steps=2,
        max_steps=40,
        grad_clip=1.0,
        scheduler=torch.optim.lr_scheduler.StepLR(optimizer, 10, 0.5),
        val_data=regression_data(50, seed=1),
        val_every=7,
        early_stopping=EarlyStopping(patience=50),
        logger=MetricLogger(folder),
        log_every=4,
        progress=False,
        seed=3,
        **kwargs,
    )


def test_resume_from_a_mid_run_checkpoint_equals_the_uninterrupted_run(tmp_path):
    save_mid_epoch = At(
        11, lambda trainer: trainer.save_checkpoint(tmp_path / "mid.pt")
    )  # 13 steps per epoch
    uninterrupted = full_featured_trainer(mlp(dropout=0.1), tmp_path / "a", callbacks=[save_mid_epoch])
    expected = uninterrupted.fit()

    (tmp_path / "b").mkdir()
    shutil.copy(tmp_path / "a" / "metrics.jsonl", tmp_path / "b")  # the log continues from the checkpoint
    resumed = full_featured_trainer(mlp(seed=7, dropout=0.1), tmp_path / "b")
    resumed.load_checkpoint(tmp_path / "mid.pt")
    assert (resumed.step, resumed.epoch, resumed.batch_in_epoch) == (11, 0, 11)
    assert resumed.fit() == expected
    assert torch.equal(flat_weights(resumed.model), flat_weights(uninterrupted.model))
    assert MetricLogger(tmp_path / "b").rows() == MetricLogger(tmp_path / "a").rows()
    assert (tmp_path / "b" / "metrics.csv").read_text() == (tmp_path / "a" / "metrics.csv").read_text()


def test_fit_resumes_from_last_checkpoint_after_a_crash(tmp_path):
    expected = full_featured_trainer(mlp(dropout=0.1), tmp_path / "a").fit()

    def crash(trainer):
        raise KeyboardInterrupt

    crashing = full_featured_trainer(
        mlp(dropout=0.1),
        tmp_path / "b",
        checkpoint_dir=tmp_path / "b",
        checkpoint_every=5,
        callbacks=[At(18, crash)],
    )
    with pytest.raises(KeyboardInterrupt):
        crashing.fit()
    assert load_checkpoint(tmp_path / "b" / "last.pt")["step"] == 15
    resumed = full_featured_trainer(
        mlp(seed=7, dropout=0.1), tmp_path / "b", checkpoint_dir=tmp_path / "b", checkpoint_every=5
    )
    assert resumed.fit() == expected
    assert MetricLogger(tmp_path / "b").rows() == MetricLogger(tmp_path / "a").rows()
    finished = full_featured_trainer(
        mlp(seed=8, dropout=0.1), tmp_path / "b", checkpoint_dir=tmp_path / "b", checkpoint_every=5
    )
    assert finished.fit() == expected and finished.step == 40  # a finished run only reports


# ---------------------------------------------------------------------- callbacks, precision, data


def test_callbacks_see_each_stage_and_can_stop():
    events = []

    class Recorder(Callback):
        def on_fit_start(self, trainer):
            events.append(("start", trainer.step))

        def on_log(self, trainer, metrics):
            events.append(("log", trainer.step, sorted(metrics)))

        def on_validation_end(self, trainer, metrics):
            events.append(("validation", trainer.step, sorted(metrics)))

        def on_epoch_end(self, trainer):
            events.append(("epoch", trainer.epoch))

        def on_step_end(self, trainer):
            if trainer.step == 6:
                trainer.should_stop = True

        def on_fit_end(self, trainer, metrics):
            events.append(("end", metrics["step"]))

    data = regression_data(64)
    trainer = sgd_trainer(
        mlp(),
        data,
        loss_fn=mse_and_mae,
        batch_size=16,
        epochs=10,
        log_every=4,
        val_data=data,
        callbacks=[Recorder()],
    )
    assert trainer.fit()["step"] == 6
    assert events == [
        ("start", 0),
        ("log", 4, ["loss", "lr", "mae"]),
        ("validation", 4, ["val_loss", "val_mae"]),
        ("epoch", 1),
        ("log", 6, ["loss", "lr", "mae"]),
        ("validation", 6, ["val_loss", "val_mae"]),
        ("end", 6),
    ]


def test_mixed_precision_runs_the_loss_in_bfloat16_on_cpu():
    dtypes = set()

    def loss_fn(model, batch):
        prediction = model(batch[0])
        dtypes.add(prediction.dtype)
        return F.mse_loss(prediction.float(), batch[1])

    x, y = regression_data()
    model = mlp()
    trainer = Trainer(
        model,
        torch.optim.Adam(model.parameters(), lr=1e-2),
        loss_fn,
        (x, y),
        batch_size=32,
        max_steps=150,
        mixed_precision=True,
        progress=False,
    )
    initial = F.mse_loss(model(x), y).item()
    trainer.fit()
    assert dtypes == {torch.bfloat16}
    assert trainer.scaler is None and model[0].weight.dtype == torch.float32
    assert F.mse_loss(model(x), y).item() < 0.1 * initial


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cuda_mixed_precision_learns_and_resumes_exactly(tmp_path, monkeypatch, dtype):
    monkeypatch.setattr(trainer_module, "autocast_dtype", lambda device: dtype)  # fp16 brings a GradScaler

    def cuda_trainer(folder, **kwargs):
        model = mlp(dropout=0.1).cuda()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        return Trainer(
            model,
            optimizer,
            mse,
            regression_data(),
            batch_size=32,
            max_steps=60,
            grad_clip=1.0,
            mixed_precision=True,
            device="cuda",
            checkpoint_dir=folder,
            checkpoint_every=10,
            logger=MetricLogger(folder),
            log_every=5,
            progress=False,
            **kwargs,
        )

    uninterrupted = cuda_trainer(tmp_path / "a")
    expected = uninterrupted.fit()
    assert (uninterrupted.scaler is not None) == (dtype == torch.float16)
    assert expected["loss"] < 0.1 * MetricLogger(tmp_path / "a").rows()[0]["loss"]

    def crash(trainer):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cuda_trainer(tmp_path / "b", callbacks=[At(25, crash)]).fit()
    resumed = cuda_trainer(tmp_path / "b")
    assert resumed.fit() == expected
    assert torch.equal(flat_weights(resumed.model), flat_weights(uninterrupted.model))
    assert MetricLogger(tmp_path / "b").rows() == MetricLogger(tmp_path / "a").rows()


class PairDataset(Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, index):
        return self.x[index], self.y[index]


def test_tensors_tensor_datasets_and_map_style_datasets_train_alike():
    x, y = regression_data(100)
    weights = []
    for data in ((x, y), TensorDataset(x, y), PairDataset(x, y)):
        model = mlp()
        sgd_trainer(model, data, batch_size=16, epochs=2).fit()
        weights.append(flat_weights(model))
    assert torch.equal(weights[0], weights[1]) and torch.equal(weights[0], weights[2])


# ---------------------------------------------------------------------------------- metric logs


def test_metric_logger_grows_columns_and_writes_non_finite_values_safely(tmp_path):
    logger = MetricLogger(tmp_path, name="train")
    logger.log({"loss": 1.5}, step=1)
    logger.log({"loss": float("nan"), "acc": torch.tensor(0.25)}, step=2)
    logger.log({"loss": float("inf")}, step=3)
    lines = (tmp_path / "train.jsonl").read_text().splitlines()
    strict = [
        json.loads(line, parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}")) for line in lines
    ]
    assert strict[1] == {"step": 2, "loss": "nan", "acc": 0.25}
    assert (tmp_path / "train.csv").read_text().splitlines() == [
        "step,loss,acc",
        "1,1.5,",
        "2,nan,0.25",
        "3,inf,",
    ]
    assert b"\r" not in (tmp_path / "train.csv").read_bytes()
    rows = MetricLogger(tmp_path, name="train").rows()
    assert math.isnan(rows[1]["loss"]) and rows[2]["loss"] == math.inf and rows[0] == {"step": 1, "loss": 1.5}
    with pytest.raises(ValueError, match=r"log\(metrics, step=\.\.\.\)"):
        logger.log({"step": 4, "loss": 1.0}, step=4)


def test_metric_logger_truncates_and_recovers_from_a_torn_line(tmp_path):
    logger = MetricLogger(tmp_path)
    for step in range(1, 6):
        logger.log({"loss": 1.0 / step}, step=step)
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 6, "lo')  # a write cut short by a kill
    (tmp_path / "metrics.csv").write_text("step,loss\n1,1.0\n")  # a CSV left behind
    reopened = MetricLogger(tmp_path)
    reopened.truncate_after(3)
    reopened.log({"loss": 0.1, "val_loss": 0.2}, step=4)
    assert [row["step"] for row in reopened.rows()] == [1, 2, 3, 4]
    assert (tmp_path / "metrics.jsonl").read_text().count("\n") == 4
    csv_lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert csv_lines[0] == "step,loss,val_loss" and csv_lines[-1] == "4,0.1,0.2" and len(csv_lines) == 5
