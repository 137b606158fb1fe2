"""The supervised training loop.

    def loss_fn(model, batch):
        x, y = batch
        return F.mse_loss(model(x), y)

    trainer = Trainer(model, torch.optim.Adam(model.parameters()), loss_fn, (x, y), batch_size=32, epochs=10)
    metrics = trainer.fit()

``loss_fn(model, batch)`` returns the mean loss over the batch's samples, or ``(loss, {"name": value})``
with further per-batch means (the same names at every step) to log next to it. ``batch`` is what the
data gives for a list of indices, on the trainer's device: a tuple of tensors for tensor data, the
``default_collate`` of the samples for any other map-style dataset. While training, ``model`` is the
module wrapped for DDP when a process group is running: call it; reach its attributes through
``trainer.model``.

One optimizer step (a "step") uses a global batch of ``batch_size * accumulation_steps * world_size``
samples: ``accumulation_steps`` micro-batches, each split across the processes. Every part's loss is
weighted by its share of the global batch, so the gradient is that of the mean loss over the global
batch whatever the accumulation and the number of processes (a smaller last batch included).

Exact resume: a checkpoint holds the model, optimizer, scheduler and grad scaler, the step, epoch and
position within the epoch, the callbacks' state (early stopping), the random states and the training
metrics not yet logged. The data order of epoch ``e`` is a permutation drawn from a generator seeded by
``(seed, e)``, so a run resumed in the middle of an epoch continues with the same batches and ends
with the same weights, metrics and logs as a run that was never interrupted. ``fit()`` resumes from
``checkpoint_dir/last.pt`` when that file exists; :meth:`Trainer.load_checkpoint` resumes from any
checkpoint.

A non-finite loss raises :class:`NonFiniteLossError` ("non-finite loss nan at step 12") at the next
log or checkpoint, before anything is written: the last checkpoint stays the last good one.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset, default_collate

from . import distributed
from .device import autocast_dtype, select_device
from .io import CheckpointError, load_checkpoint, save_checkpoint
from .progress import ProgressBar
from .seeding import rng_state, seed_everything, set_rng_state

if TYPE_CHECKING:
    from .metrics import MetricLogger

CHECKPOINT_FORMAT = 1
HOOKS = ("on_fit_start", "on_log", "on_validation_end", "on_epoch_end", "on_step_end", "on_fit_end")


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


class Callback:
    """Hooks into :class:`Trainer`; each receives the trainer (``trainer.step``, ``.epoch``, ``.model``...).

    Any object with some of these methods works as a callback. Setting ``trainer.should_stop = True``
    ends training after the current step. A callback with state returns it from ``state_dict`` as
    plain data, and checkpoints carry it. Under DDP the hooks run on every process with the same
    (all-reduced) metrics, so decisions taken from them agree.
    """

    def on_fit_start(self, trainer: Trainer) -> None:
        """Training starts (or resumes)."""

    def on_log(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        """Training metrics were logged: means over the steps since the previous log, and ``lr``."""

    def on_validation_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        """Validation finished; ``metrics`` are named ``val_loss``, ``val_<name>``."""

    def on_epoch_end(self, trainer: Trainer) -> None:
        """An epoch ended (``trainer.epoch`` already counts it)."""

    def on_step_end(self, trainer: Trainer) -> None:
        """A step ended, after what it triggered (log, validation, end of epoch) and before a
        checkpoint: the trainer's state is then what a checkpoint holds."""

    def on_fit_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        """Training ended; ``metrics`` is what ``fit`` returns."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""


class EarlyStopping(Callback):
    """Stop when the validation metric ``monitor`` has not improved by more than ``min_delta`` for
    ``patience`` validations in a row; ``mode`` is ``"min"`` (losses) or ``"max"`` (accuracies)."""

    def __init__(
        self, monitor: str = "val_loss", patience: int = 5, min_delta: float = 0.0, mode: str = "min"
    ):
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if patience < 1 or min_delta < 0:
            raise ValueError(f"need patience >= 1 and min_delta >= 0, got {patience} and {min_delta}")
        self.monitor, self.patience, self.min_delta, self.mode = monitor, patience, min_delta, mode
        self.best = math.inf if mode == "min" else -math.inf
        self.bad_validations = 0

    def on_validation_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        if self.monitor not in metrics:
            raise KeyError(f"early stopping monitors {self.monitor!r}, validation gives {sorted(metrics)}")
        value = metrics[self.monitor]
        improved = (
            value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta
        )
        if improved:
            self.best, self.bad_validations = value, 0
        else:
            self.bad_validations += 1
            if self.bad_validations >= self.patience:
                trainer.should_stop = True

    def state_dict(self) -> dict:
        return {"best": self.best, "bad_validations": self.bad_validations}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.bad_validations = state["best"], state["bad_validations"]


class Trainer:
    """Supervised training with accumulation, clipping, mixed precision, callbacks, checkpoints and DDP.

    - ``epochs`` and/or ``max_steps`` (optimizer steps) bound training; the first reached ends it.
    - ``val_data`` is evaluated every ``val_every`` steps, or at the end of each epoch when that is
      None, and when training ends; its metrics are ``val_loss`` and ``val_<name>``.
    - ``grad_clip`` clips the global gradient norm (the norm before clipping is logged as ``grad_norm``).
    - ``mixed_precision`` runs ``loss_fn`` under ``torch.autocast`` with the device's dtype
      (:func:`~papers.core.device.autocast_dtype`: bf16 on CPU; fp16 with a GradScaler on CUDA
      without bf16); on devices without one it changes nothing.
    - ``scheduler.step()`` is called after every optimizer step.
    - ``checkpoint_dir/last.pt`` is written every ``checkpoint_every`` steps (at the end of each epoch
      when that is None) and when training ends.
    - Training metrics are averaged over ``log_every`` steps and logged to ``logger`` (a
      :class:`~papers.core.metrics.MetricLogger`) with ``epoch`` and ``lr``; so are validation metrics.
    - ``seed`` fixes the data order and, when training starts from step 0, seeds every generator
      (:func:`~papers.core.seeding.seed_everything`); seed the model's initialisation yourself.

    Under a process group (:mod:`papers.core.distributed`), ``batch_size`` is per process; an epoch
    uses a multiple of the world size of samples, and only rank 0 writes checkpoints and logs.
    State after training: ``step``, ``epoch`` (epochs completed), ``batch_in_epoch``, ``should_stop``,
    ``train_metrics`` (last logged) and ``val_metrics`` (last validation).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_fn: Callable[[nn.Module, Any], torch.Tensor | tuple[torch.Tensor, dict[str, Any]]],
        train_data: Any,
        *,
        batch_size: int,
        epochs: int | None = None,
        max_steps: int | None = None,
        val_data: Any = None,
        val_every: int | None = None,
        shuffle: bool = True,
        drop_last: bool = False,
        grad_clip: float | None = None,
        accumulation_steps: int = 1,
        mixed_precision: bool = False,
        scheduler: Any = None,
        callbacks: Sequence[Any] = (),
        early_stopping: EarlyStopping | None = None,
        checkpoint_dir: str | os.PathLike | None = None,
        checkpoint_every: int | None = None,
        logger: MetricLogger | None = None,
        log_every: int = 50,
        progress: bool | None = None,
        device: str | torch.device = "cpu",
        seed: int = 0,
    ):
        for name, value in (
            ("batch_size", batch_size),
            ("accumulation_steps", accumulation_steps),
            ("log_every", log_every),
            ("epochs", epochs),
            ("max_steps", max_steps),
            ("val_every", val_every),
            ("checkpoint_every", checkpoint_every),
        ):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if epochs is None and max_steps is None:
            raise ValueError("give epochs, max_steps or both")
        if grad_clip is not None and not grad_clip > 0:
            raise ValueError(f"grad_clip must be positive, got {grad_clip!r}")
        if val_data is None and (val_every is not None or early_stopping is not None):
            raise ValueError("val_every and early_stopping need val_data")

        self.world_size, self.rank = distributed.world_size(), distributed.rank()
        self.device = _process_device(device)
        self.model = model.to(self.device)
        self.optimizer, self.loss_fn, self.scheduler = optimizer, loss_fn, scheduler
        self.train_data = _Data(train_data, "train_data", self.device)
        self.val_data = None if val_data is None else _Data(val_data, "val_data", self.device)
        if self.val_data is not None and self.val_data.length < self.world_size:
            raise ValueError(f"val_data has {self.val_data.length} samples for {self.world_size} processes")
        self.batch_size = batch_size
        self.accumulation_steps = accumulation_steps
        self.epochs = epochs
        self.max_steps = max_steps
        self.val_every = val_every
        self.shuffle = shuffle
        self.grad_clip = grad_clip
        self.seed = seed
        self.callbacks = [*callbacks, *([early_stopping] if early_stopping is not None else [])]
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.checkpoint_every = checkpoint_every
        self.logger = logger
        self.log_every = log_every
        self.progress = progress

        self._train_model: nn.Module = self.model
        if distributed.is_distributed():
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self._train_model = nn.parallel.DistributedDataParallel(self.model, device_ids=device_ids)
        self.autocast_dtype = autocast_dtype(self.device) if mixed_precision else None
        self.scaler = torch.amp.GradScaler(self.device.type) if self.autocast_dtype == torch.float16 else None
        self._parameters = [p for p in self.model.parameters() if p.requires_grad]
        self._hooks = {
            name: [getattr(cb, name) for cb in self.callbacks if _overrides(cb, name)] for name in HOOKS
        }

        self.epoch_samples = self.train_data.length - self.train_data.length % self.world_size
        self.global_batch_size = batch_size * accumulation_steps * self.world_size
        full, rest = divmod(self.epoch_samples, self.global_batch_size)
        self.steps_per_epoch = full + (1 if rest and not drop_last else 0)
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"train_data has {self.train_data.length} samples, fewer than one global batch "
                f"({self.global_batch_size}) and drop_last is set"
            )
        epoch_steps = None if epochs is None else epochs * self.steps_per_epoch
        self.total_steps = min(n for n in (max_steps, epoch_steps) if n is not None)

        self.step = self.epoch = self.batch_in_epoch = 0
        self.should_stop = False
        self.train_metrics: dict[str, float] = {}
        self.val_metrics: dict[str, float] = {}
        self._window: dict[str, list[torch.Tensor]] = {}  # per-step metrics not yet logged
        self._last_validation_step: int | None = None
        self._plan: tuple[int, list] | None = None  # (epoch, its micro-batches step by step)
        self._shown: dict[str, float] = {}  # what the progress bar shows
        self._started = False

    # ----------------------------------------------------------------------------------- training

    def fit(self) -> dict[str, float]:
        """Train until ``epochs``/``max_steps`` or a stop request and return the final metrics:
        ``step``, ``epoch``, the last logged training metrics and the last validation metrics."""
        if not self._started:
            last = None if self.checkpoint_dir is None else self.checkpoint_dir / "last.pt"
            if last is not None and last.is_file():
                self.load_checkpoint(last)
            else:
                seed_everything(self.seed)
            self._started = True
        self._call("on_fit_start")
        self._train_model.train()
        enabled = self.progress if self.rank == 0 else False
        with ProgressBar(self.total_steps, "training", enabled=enabled) as bar:
            bar.update(self.step, **self._shown)
            while not self._finished():
                self._train_step()
                self._after_step()
                bar.update(1, **self._shown)
        metrics = {"step": self.step, "epoch": self.epoch, **self.train_metrics, **self.val_metrics}
        self._call("on_fit_end", metrics)
        return metrics

    def _finished(self) -> bool:
        return (
            self.should_stop
            or (self.max_steps is not None and self.step >= self.max_steps)
            or (self.epochs is not None and self.epoch >= self.epochs)
        )

    def _train_step(self) -> None:
        """One optimizer step over the global batch at the current position of the epoch."""
        if self._plan is None or self._plan[0] != self.epoch:
            self._plan = (self.epoch, self._epoch_plan(self.epoch))
        micro_batches = self._plan[1][self.batch_in_epoch]
        totals: dict[str, torch.Tensor] = {}
        for i, (indices, weight) in enumerate(micro_batches):
            batch = self.train_data.batch(indices)
            skip_sync = i < len(micro_batches) - 1 and self._train_model is not self.model  # DDP: sync once
            with self._train_model.no_sync() if skip_sync else nullcontext():
                with self._autocast():
                    loss, extras = self._loss(self._train_model, batch)
                if weight != 1.0:
                    loss = loss * weight
                (loss if self.scaler is None else self.scaler.scale(loss)).backward()
            values = {"loss": loss.detach().float()}
            if extras:
                values.update((key, _as_tensor(value, self.device) * weight) for key, value in extras.items())
            totals = values if not totals else {key: totals[key] + values[key] for key in totals}
        if self.grad_clip is not None:
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)
            totals["grad_norm"] = nn.utils.clip_grad_norm_(self._parameters, self.grad_clip)
        if self.scaler is None:
            self.optimizer.step()
        else:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        if self.scheduler is not None:
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        for key, value in totals.items():
            self._window.setdefault(key, []).append(value)

    def _epoch_plan(self, epoch: int) -> list[list[tuple[torch.Tensor, float]]]:
        """For each step of ``epoch``, this process's (indices, weight) of each micro-batch.

        A step's global batch is cut into micro-batches of ``batch_size * world_size`` consecutive
        samples, and each micro-batch is dealt out to the processes like a DistributedSampler: rank r
        takes its samples r, r + world_size, ... ``weight`` is the micro-batch's share of the global
        batch: it scales a loss that is a mean over this process's part so that the gradients,
        averaged over processes by DDP and summed over micro-batches, are those of the mean over the
        global batch.
        """
        steps = self._epoch_order(epoch).split(self.global_batch_size)[: self.steps_per_epoch]
        if self.accumulation_steps == 1 and self.world_size == 1:
            return [[(indices, 1.0)] for indices in steps]
        plan = []
        for indices in steps:
            parts = indices.split(self.batch_size * self.world_size)
            plan.append([(part[self.rank :: self.world_size], len(part) / len(indices)) for part in parts])
        return plan

    def _epoch_order(self, epoch: int) -> torch.Tensor:
        """The sample order of ``epoch``, the same on every process and after a resume."""
        if not self.shuffle:
            return torch.arange(self.epoch_samples)
        (seed,) = np.random.SeedSequence([self.seed, epoch]).generate_state(1, np.uint64)
        generator = torch.Generator().manual_seed(int(seed))
        return torch.randperm(self.train_data.length, generator=generator)[: self.epoch_samples]

    def _loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        out = self.loss_fn(model, batch)
        loss, extras = (out, {}) if isinstance(out, torch.Tensor) else out
        if getattr(loss, "ndim", None) != 0:
            raise ValueError(f"loss_fn must return a scalar tensor (the batch mean), got {_describe(loss)}")
        return loss, extras

    def _autocast(self):
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _after_step(self) -> None:
        """Count the step, then log, validate, end the epoch and checkpoint as scheduled."""
        self.step += 1
        self.batch_in_epoch += 1
        if self.step % self.log_every == 0:
            self._log_training()
        if self.val_every is not None and self.step % self.val_every == 0:
            self._validate()
        epoch_ended = self.batch_in_epoch == self.steps_per_epoch
        if epoch_ended:
            self.epoch += 1
            self.batch_in_epoch = 0
            if self.val_data is not None and self.val_every is None:
                self._validate()
            self._call("on_epoch_end")
        self._call("on_step_end")
        finished = self._finished()
        if finished:
            if self._window:
                self._log_training()
            if self.val_data is not None and self._last_validation_step != self.step:
                self._validate()
        scheduled = epoch_ended if self.checkpoint_every is None else self.step % self.checkpoint_every == 0
        if self.checkpoint_dir is not None and (finished or scheduled):
            self.save_checkpoint(self.checkpoint_dir / "last.pt")

    # ------------------------------------------------------------------------- metrics, validation

    def _log_training(self) -> None:
        keys, values = self._reduced_window()
        means = values.mean(dim=1).tolist()
        self._raise_if_non_finite(values[0], means[0])
        self._window = {}
        self.train_metrics = {
            **dict(zip(keys, means, strict=True)),
            "lr": float(self.optimizer.param_groups[0]["lr"]),
        }
        self._shown["loss"] = self.train_metrics["loss"]
        if self.logger is not None and self.rank == 0:
            self.logger.log({"epoch": self.epoch, **self.train_metrics}, step=self.step)
        self._call("on_log", self.train_metrics)

    def _reduced_window(self) -> tuple[list[str], torch.Tensor]:
        """The unlogged per-step metrics of all processes: names and a (names, steps) tensor."""
        keys = list(self._window)
        values = torch.stack([value for key in keys for value in self._window[key]])
        values = values.to(self.device, torch.float32).view(len(keys), -1)
        if self.world_size > 1:
            distributed.all_reduce_sum(values)
            values /= self.world_size
        return keys, values

    def _raise_if_non_finite(self, losses: torch.Tensor, mean_loss: float) -> None:
        if math.isfinite(mean_loss):
            return
        first = int((~torch.isfinite(losses)).nonzero()[0])
        step = self.step - len(losses) + 1 + first
        raise NonFiniteLossError(f"non-finite loss {losses[first].item()} at step {step}")

    @torch.no_grad()
    def _validate(self) -> None:
        """Mean loss and metrics over ``val_data`` (each process takes every world_size-th sample)."""
        self.model.eval()
        indices = torch.arange(self.val_data.length)[self.rank :: self.world_size]
        totals: dict[str, torch.Tensor] = {}
        for part in indices.split(self.batch_size):
            batch = self.val_data.batch(part)
            with self._autocast():
                loss, extras = self._loss(self.model, batch)
            for key, value in {"loss": loss, **extras}.items():
                totals[key] = totals.get(key, 0.0) + _as_tensor(value, self.device) * len(part)
        values = distributed.all_reduce_sum(torch.stack(list(totals.values()))) / self.val_data.length
        self.model.train()
        self.val_metrics = {f"val_{key}": value for key, value in zip(totals, values.tolist(), strict=True)}
        self._last_validation_step = self.step
        self._shown["val_loss"] = self.val_metrics["val_loss"]
        if self.logger is not None and self.rank == 0:
            self.logger.log({"epoch": self.epoch, **self.val_metrics}, step=self.step)
        self._call("on_validation_end", self.val_metrics)

    def _call(self, hook: str, *args: Any) -> None:
        for method in self._hooks[hook]:
            method(self, *args)

    # ------------------------------------------------------------------------------ checkpoints

    def save_checkpoint(self, path: str | os.PathLike) -> None:
        """Write the whole training state to ``path`` atomically (rank 0 writes; call it on every
        process). Raises :class:`NonFiniteLossError` instead if a loss since the last log was not finite."""
        window = {}
        if self._window:
            keys, values = self._reduced_window()
            self._raise_if_non_finite(values[0], values[0].mean().item())
            # Keep the all-reduced values: they are what every process resumes with.
            self._window = {key: list(row.unbind()) for key, row in zip(keys, values, strict=True)}
            window = {key: row.cpu() for key, row in zip(keys, values, strict=True)}
        if self.rank != 0:
            return
        state = {
            "format": CHECKPOINT_FORMAT,
            "data": self._data_signature(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "scaler": None if self.scaler is None else self.scaler.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "should_stop": self.should_stop,
            "window": window,
            "train_metrics": self.train_metrics,
            "val_metrics": self.val_metrics,
            "last_validation_step": self._last_validation_step,
            "callbacks": {
                name: state for name, cb in self._stateful_callbacks().items() if (state := cb.state_dict())
            },
            "rng": rng_state(),
        }
        save_checkpoint(path, state)

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        """Continue from a checkpoint written by :meth:`save_checkpoint`; the logger drops the rows
        logged after it. Raises :class:`~papers.core.io.CheckpointError` (the file is left as it is)
        when it cannot be read or was written by a different setup."""
        path = Path(path)
        state = load_checkpoint(path)
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{path} is not a Trainer checkpoint")
        try:
            for key, ours in self._data_signature().items():
                if state["data"][key] != ours:
                    raise ValueError(
                        f"it was written with {key}={state['data'][key]!r}, this trainer has {ours!r}"
                    )
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            _load_optional(self.scheduler, state["scheduler"], "scheduler")
            _load_optional(self.scaler, state["scaler"], "grad scaler")
            callbacks = self._stateful_callbacks()
            missing = sorted(set(state["callbacks"]) - set(callbacks))
            if missing:
                raise ValueError(f"it holds the state of callbacks {missing}, which this trainer lacks")
            for name, callback_state in state["callbacks"].items():
                callbacks[name].load_state_dict(callback_state)
        except (KeyError, ValueError, RuntimeError, TypeError) as exc:
            raise CheckpointError(f"{path} does not fit this trainer: {_one_line(exc)}") from exc
        self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        self.should_stop = state["should_stop"]
        self._window = {key: list(row.to(self.device).unbind()) for key, row in state["window"].items()}
        self.train_metrics, self.val_metrics = state["train_metrics"], state["val_metrics"]
        self._last_validation_step = state["last_validation_step"]
        metrics = {**self.train_metrics, **self.val_metrics}
        self._shown = {key: metrics[key] for key in ("loss", "val_loss") if key in metrics}
        set_rng_state(state["rng"])
        self._started = True
        if self.logger is not None and self.rank == 0:
            self.logger.truncate_after(self.step)

    def _stateful_callbacks(self) -> dict[str, Any]:
        """Callbacks with a ``state_dict``, by class name (``Name#2`` for the second of a class)."""
        named, counts = {}, {}
        for callback in self.callbacks:
            if hasattr(callback, "state_dict"):
                name = type(callback).__name__
                counts[name] = counts.get(name, 0) + 1
                named[name if counts[name] == 1 else f"{name}#{counts[name]}"] = callback
        return named

    def _data_signature(self) -> dict[str, Any]:
        """What decides which samples each step sees; a checkpoint only fits the same."""
        return {
            "seed": self.seed,
            "shuffle": self.shuffle,
            "epoch_samples": self.epoch_samples,
            "global_batch_size": self.global_batch_size,
            "steps_per_epoch": self.steps_per_epoch,
        }


class _Data:
    """Training or validation data: tensors (a tuple, a list or a TensorDataset) or a map-style dataset,
    giving batches on ``device``."""

    def __init__(self, data: Any, name: str, device: torch.device):
        if isinstance(data, TensorDataset):
            data = data.tensors
        if isinstance(data, torch.Tensor):
            data = (data,)
        self.tensors: tuple[torch.Tensor, ...] | None = None
        self.dataset: Any = None
        if isinstance(data, (tuple, list)) and data and all(isinstance(t, torch.Tensor) for t in data):
            lengths = {len(t) for t in data}
            if len(lengths) > 1:
                raise ValueError(f"{name}: tensors of different lengths {sorted(lengths)}")
            self.tensors, self.length = tuple(data), lengths.pop()
        elif (
            not isinstance(data, (tuple, list)) and hasattr(data, "__getitem__") and hasattr(data, "__len__")
        ):
            self.dataset, self.length = data, len(data)
        else:
            raise TypeError(
                f"{name} must be tensors (a tuple or TensorDataset) or a map-style dataset, "
                f"got {_describe(data)}"
            )
        if self.length == 0:
            raise ValueError(f"{name} is empty")
        self.device = device
        self.on_device = self.tensors is not None and all(t.device == device for t in self.tensors)

    def batch(self, indices: torch.Tensor) -> Any:
        if self.on_device:
            return tuple(t[indices] for t in self.tensors)
        if self.tensors is not None:
            return tuple(t[indices].to(self.device, non_blocking=True) for t in self.tensors)
        return _to_device(default_collate([self.dataset[i] for i in indices.tolist()]), self.device)


def _process_device(device: str | torch.device) -> torch.device:
    device = device if isinstance(device, torch.device) else select_device(device)
    if device.type == "cuda" and device.index is None and distributed.is_distributed():
        device = torch.device("cuda", distributed.local_rank())
    return device


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to_device(item, device) for item in batch)
    if isinstance(batch, dict):
        return {key: _to_device(value, device) for key, value in batch.items()}
    return batch


def _as_tensor(value: Any, device: torch.device) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().to(device, torch.float32)
    return torch.tensor(float(value), device=device)


def _overrides(callback: Any, hook: str) -> bool:
    """Whether ``callback`` implements ``hook`` (the no-op defaults of :class:`Callback` do not count)."""
    method = getattr(type(callback), hook, None)
    return callable(method) and method is not getattr(Callback, hook)


def _load_optional(target: Any, state: dict | None, name: str) -> None:
    if (target is None) != (state is None):
        raise ValueError(
            f"the checkpoint {'has' if state is not None else 'has no'} {name} state, "
            f"this trainer {'has no' if target is None else 'has a'} {name}"
        )
    if target is not None:
        target.load_state_dict(state)


def _one_line(exc: Exception, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    return type(value).__name__
