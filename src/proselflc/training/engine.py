"""The training loop: one run of one config, in-process, no Ray.

Reads top to bottom like a minimal trainer: data lives on the device, batches are index slices of a
seeded permutation, the loss is whatever `losses.build` returns, and every evaluated epoch yields the
noisy-label diagnostics (`proselflc.metric_table` lists them). Everything random is drawn from
generators the Engine owns, so a checkpoint can capture them and a resumed run ends bit-identical to an
uninterrupted one. Counters say what they count: `batches_done` / `total_batches` are training batches
(ProSelfLC's time t = batches_done / total_batches); optimiser updates are counted by the LR schedule.
"""

from __future__ import annotations

import contextlib
import math
import pickle
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from proselflc import data as data_lib
from proselflc import dotted, losses, metric_table, models, selection_certainty
from proselflc.config import OptimConfig, RunConfig, build_run_config, read_yaml
from proselflc.data.base import Dataset
from proselflc.data.sampler import class_balanced_order
from proselflc.errors import ConfigError
from proselflc.io import atomic_write
from proselflc.training.cpu_memory import freed_memory_kept
from proselflc.training.metrics import NAN, fit_metrics, test_metrics
from proselflc.training.noisy_split import noisy_split
from proselflc.training.process_settings import torch_threads
from proselflc.training.run_dir import RunDirWriter
from proselflc.training.schedule import lr_factor

CHECKPOINT_FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be trusted or does not belong to this run."""


def resolve_device(name: str) -> torch.device:
    """`auto` is CUDA when visible (Ray sets CUDA_VISIBLE_DEVICES to a trial's GPUs), else CPU."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: 'cuda' was asked for but no CUDA device is visible; use 'auto' or 'cpu'")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def build_optimizer(model: nn.Module, optim: OptimConfig) -> torch.optim.Optimizer:
    """SGD with momentum and weight decay, or AdamW (decoupled weight decay) for transformers."""
    if optim.name == "adamw":
        return torch.optim.AdamW(
            model.parameters(), lr=optim.lr, betas=(optim.momentum, 0.999), weight_decay=optim.weight_decay
        )
    return torch.optim.SGD(
        model.parameters(),
        lr=optim.lr,
        momentum=optim.momentum,
        weight_decay=optim.weight_decay,
        nesterov=optim.nesterov and optim.momentum > 0,
    )


class Engine:
    """Train `cfg` on `dataset` (loaded from `cfg.data` when not given), yielding metrics per evaluated epoch."""

    def __init__(self, cfg: RunConfig, dataset: Dataset | None = None, run_dir: str | Path | None = None) -> None:
        self.cfg = cfg
        train = cfg.train
        self.device = resolve_device(train.device)
        dataset = (dataset or data_lib.load(cfg.data)).limit(cfg.data.limit)
        self.num_classes = dataset.num_classes
        split = noisy_split(
            dataset.train_labels, cfg.noise, num_classes=dataset.num_classes, val_fraction=cfg.data.val_fraction,
            seed=train.seed, labels_are_noisy=dataset.labels_are_noisy, clean_labels=dataset.train_clean_labels,
        )
        as_tensor = lambda a: torch.tensor(a, device=self.device)  # a copy: object-store arrays are read-only
        self.val_index = as_tensor(split.val_index)
        self.train_index = as_tensor(split.train_index)
        self.noisy_labels = as_tensor(split.noisy)
        known = dataset.train_clean_labels
        self.true_labels = as_tensor(dataset.train_labels if known is None else known)
        self.is_noisy = None if split.is_noisy is None else as_tensor(split.is_noisy)
        self.noise_rate = NAN if split.is_noisy is None else float(split.is_noisy.mean())  # measured, not asked for
        self.test_labels = as_tensor(dataset.test_labels)
        self.dataset = dataset.to(self.device)

        torch.manual_seed(train.seed)
        model = models.build(
            cfg.model.name, dataset.num_classes, dataset.input_shape, **{**dataset.model_kwargs, **cfg.model.kwargs}
        ).to(self.device)
        self.channels_last = train.channels_last and len(dataset.input_shape) == 3  # faster for CNNs on CPU too
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.forward = torch.compile(model) if train.compile else model
        self.loss_fn = losses.build(cfg.loss.name, dataset.num_classes, **cfg.loss.hyperparameters).to(self.device)
        self.loss_fn.set_num_examples(len(dataset))  # per-example state (ELR) has one row per training example
        self.amp = self.device.type == "cuda" and train.amp

        self.batches_per_epoch = self._num_batches(len(self.train_index))
        self.total_batches = train.epochs * self.batches_per_epoch
        if cfg.optim.milestones_unit == "iterations" and cfg.optim.milestones[-1:] > [self.total_batches]:
            raise ConfigError(
                f"optim.milestones {cfg.optim.milestones} (iterations) go past the run's {self.total_batches} "
                f"iterations ({train.epochs} epochs x {self.batches_per_epoch} batches)"
            )
        self.optimizer = build_optimizer(model, cfg.optim)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_factor(cfg.optim, train.epochs, self.batches_per_epoch)
        )
        self.shuffle_rng = torch.Generator().manual_seed(train.seed)
        self.augment_rng = torch.Generator(device=self.device).manual_seed(train.seed + 1)
        self.epoch = 0
        self.batches_done = 0
        self.history: list[dict[str, Any]] = []
        # Each training example's predicted class when it was last trained on (-1: not yet): Label Wave's signal.
        self.last_prediction = torch.full((len(self.noisy_labels),), -1, dtype=torch.long, device=self.device)
        self.val_correct: np.ndarray | None = None
        self.test_correct: np.ndarray | None = None
        self.writer = RunDirWriter(run_dir, cfg) if run_dir is not None else None

    def _num_batches(self, n: int) -> int:
        """Full batches plus the last partial one, unless it would hold a single example (BatchNorm can't).

        Class-balanced batches are all full, n // batch_size of them, as in the ProSelfLC code's sampler.
        """
        full, rest = divmod(n, self.cfg.train.batch_size)
        if self.cfg.train.sampler == "class_balanced":
            if full == 0:
                raise ConfigError(
                    f"train.batch_size = {self.cfg.train.batch_size} is larger than the {n} training examples; "
                    "the class_balanced sampler needs at least one full batch"
                )
            return full
        return full + (1 if rest > 1 or full == 0 else 0)

    def _epoch_order(self) -> torch.Tensor:
        """This epoch's training indices, batch after batch: a seeded permutation, or class-balanced batches."""
        train = self.cfg.train
        if train.sampler == "class_balanced":
            per_class = train.batch_size // train.classes_per_batch
            positions = class_balanced_order(
                self.noisy_labels[self.train_index], train.classes_per_batch, per_class, self.batches_per_epoch,
                self.shuffle_rng,
            )
            return self.train_index[positions]
        return self.train_index[torch.randperm(len(self.train_index), generator=self.shuffle_rng).to(self.device)]

    def _autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.amp else contextlib.nullcontext()

    def _inputs(self, split: str, index: torch.Tensor, augment: bool) -> torch.Tensor:
        x = self.dataset.batch(split, index, augment=augment, generator=self.augment_rng)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _train_epoch(self) -> tuple[float, float, float, float]:
        """One pass over the (noisy) training split; returns mean loss, mean epsilon, samples/s and prediction changes.

        Prediction changes: the share of the epoch's examples, among those trained on before, whose argmax in this
        training forward pass differs from the one when they were last trained on; 1.0 in the first epoch, where every
        prediction is new (Label Wave counts 0 there, which would read as a minimum). It reuses the logits the loss
        needs: one argmax and a compare per batch, on the device, no extra pass.
        """
        cfg = self.cfg
        self.model.train()
        bs, accumulate = cfg.train.batch_size, cfg.optim.accumulate_steps
        order = self._epoch_order()
        loss_sum = torch.zeros((), device=self.device)
        eps_sum = torch.zeros((), device=self.device)
        changed = torch.zeros((), dtype=torch.long, device=self.device)
        compared = torch.zeros((), dtype=torch.long, device=self.device)
        seen = 0
        start = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        for b in range(self.batches_per_epoch):
            index = order[b * bs : (b + 1) * bs]
            x = self._inputs("train", index, augment=cfg.data.augment)
            with self._autocast():
                logits = self.forward(x)
            loss = self.loss_fn(
                logits.float(), self.noisy_labels[index], step=self.batches_done, total_steps=self.total_batches,
                index=index,
            )
            (loss / accumulate).backward()
            prediction, before = logits.detach().argmax(1), self.last_prediction[index]
            compared += (before >= 0).sum()
            changed += ((before >= 0) & (before != prediction)).sum()
            self.last_prediction[index] = prediction
            if (b + 1) % accumulate == 0 or b + 1 == self.batches_per_epoch:
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.scheduler.step()
            n = len(index)
            loss_sum += loss.detach() * n
            eps_sum += self.loss_fn.stats["mean_epsilon"].to(self.device) * n
            seen += n
            self.batches_done += 1
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elapsed = time.perf_counter() - start
        n_compared = compared.item()
        changes = changed.item() / n_compared if n_compared else 1.0
        return (loss_sum / seen).item(), (eps_sum / seen).item(), seen / max(elapsed, 1e-9), changes

    @torch.no_grad()
    def _logits(self, split: str, index: torch.Tensor) -> torch.Tensor:
        self.model.eval()
        bs = self.cfg.train.eval_batch_size
        out = []
        for start in range(0, len(index), bs):
            with self._autocast():
                out.append(self.forward(self._inputs(split, index[start : start + bs], augment=False)).float())
        return torch.cat(out) if out else torch.empty(0, self.num_classes, device=self.device)

    def evaluate(self) -> dict[str, float]:
        """Noisy-validation accuracy, clean-test metrics, and how the training split is fitted."""
        val = self._logits("train", self.val_index)
        val_correct = val.argmax(1) == self.noisy_labels[self.val_index]
        val_acc = val_correct.float().mean().item() if len(val) else NAN
        test_index = torch.arange(len(self.test_labels), device=self.device)
        test = self._logits("test", test_index)
        # Per-example correctness of the last evaluation: a paired bootstrap of two configs' choices needs it.
        self.val_correct = val_correct.cpu().numpy()
        self.test_correct = (test.argmax(1) == self.test_labels).cpu().numpy()
        out = {"val_accuracy": val_acc, **test_metrics(test, self.test_labels)}
        if self.is_noisy is None:
            out.update(fit_metrics(val, self.noisy_labels, self.true_labels, None))
        else:
            idx = self.train_index
            out.update(
                fit_metrics(self._logits("train", idx), self.noisy_labels[idx], self.true_labels[idx], self.is_noisy[idx])
            )
        return out

    @contextlib.contextmanager
    def process_settings(self) -> Iterator[None]:
        """The process-wide settings the run trains under, put back when it ends: torch's threads
        (`train.threads`; None keeps the process's) and, on CPU, glibc's allocator thresholds (`cpu_memory`)."""
        memory = freed_memory_kept() if self.device.type == "cpu" else contextlib.nullcontext()
        with torch_threads(self.cfg.train.threads), memory:
            yield

    def val_correct_text(self) -> str:
        """The last evaluation's per-example noisy-validation correctness as a run keeps it (a few hundred
        bytes; `selection_certainty` reads it to say how sure a selection between two runs is)."""
        if self.val_correct is None:
            raise RuntimeError("val_correct_text: no evaluation yet")
        split = selection_certainty.split_id(
            self.val_index.cpu().numpy(), self.noisy_labels[self.val_index].cpu().numpy()
        )
        noise = self.cfg.noise
        kappa = selection_certainty.noise_kappa(
            noise.kind, noise.rate, self.num_classes, matrix=noise.matrix, allow_true_label=noise.allow_true_label,
            labels_are_noisy=self.dataset.labels_are_noisy,
        )
        return selection_certainty.encode_correct(self.val_correct, epoch=self.epoch, split=split, kappa_=kappa)

    def evaluation_due(self, epoch: int) -> bool:
        """Every `train.eval_every` epochs and at the last one (a diverged epoch reports without evaluating)."""
        return epoch % self.cfg.train.eval_every == 0 or epoch == self.cfg.train.epochs

    def checkpoint_due(self, epoch: int, every: int | None = None) -> bool:
        """Whether the state after `epoch` is saved: the one rule for run directories and Ray trials.

        Due at the last epoch, at an epoch that diverged (the run ends there), and every `every` epochs
        (default `train.checkpoint_every`; 0: no periodic checkpoints). Ask once `epoch`'s row is in `history`.
        """
        every = self.cfg.train.checkpoint_every if every is None else every
        last = self.history[-1] if self.history else {}
        diverged_here = last.get("epoch") == epoch and bool(last.get("diverged"))
        return epoch == self.cfg.train.epochs or diverged_here or (every > 0 and epoch % every == 0)

    def epochs(self) -> Iterator[dict[str, Any]]:
        """Train to `train.epochs`, yielding metrics after each evaluated epoch; stops early on divergence.

        The process-wide settings (`process_settings`) hold from the first epoch until the loop ends or
        its consumer drops it.
        """
        with self.process_settings():
            while self.epoch < self.cfg.train.epochs:
                train_loss, mean_eps, speed, changes = self._train_epoch()
                self.epoch += 1
                diverged = not math.isfinite(train_loss)
                if not diverged and not self.evaluation_due(self.epoch):
                    continue
                row: dict[str, Any] = {
                    "epoch": self.epoch,
                    "lr": self.optimizer.param_groups[0]["lr"],
                    "train_loss": train_loss,
                    "mean_epsilon": mean_eps,
                    "measured_noise_rate": self.noise_rate,
                    "samples_per_s": speed,
                    "prediction_changes": changes,
                    "diverged": diverged,
                    **(metric_table.diverged_values() if diverged else self.evaluate()),
                }
                self.history.append(row)
                if self.writer is not None:
                    self.writer.write_metrics(self.history)
                    if self.epoch == self.cfg.train.epochs and not diverged:
                        self.writer.write_text(selection_certainty.VAL_CORRECT_FILE, self.val_correct_text())
                    if self.checkpoint_due(self.epoch):
                        self.save_checkpoint(self.writer.checkpoint_path)
                yield row
                if diverged:
                    return

    def run(self) -> list[dict[str, Any]]:
        """Train to the end (progress as a bar on a terminal, a line per epoch in a log); returns the metrics history."""
        from proselflc.training.progress import Progress

        bar = Progress(self.cfg.name, self.cfg.train.epochs, self.epoch, enabled=self.cfg.train.progress)
        try:
            for row in self.epochs():
                bar.update(row)
        finally:
            bar.close()
            if self.writer is not None:
                self.writer.close()
        return self.history

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: weights, optimiser, schedule, loss, counters, RNG states.

        `step` holds `batches_done` (the key checkpoints have always used).
        """
        rng = {
            "torch": torch.get_rng_state(),
            "shuffle": self.shuffle_rng.get_state(),
            "augment": self.augment_rng.get_state(),
        }
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.cfg.to_dict(),
            "epoch": self.epoch,
            "step": self.batches_done,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "loss": self.loss_fn.state_dict(),
            "rng": rng,
            "history": self.history,
            "last_prediction": self.last_prediction,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a `state_dict()`; refuses one written for a different model, loss or dataset."""
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError("not a proselflc checkpoint (missing or unknown 'format' entry)")
        saved = state["config"]
        for section in ("data", "model", "loss"):
            if saved.get(section, {}).get("name") != getattr(self.cfg, section).name:
                raise CheckpointError(
                    f"checkpoint was written for {section}.name = {saved.get(section, {}).get('name')!r}, "
                    f"this run has {getattr(self.cfg, section).name!r}"
                )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.loss_fn.load_state_dict(state["loss"])
        self.epoch, self.batches_done = int(state["epoch"]), int(state["step"])
        # Generators take their state as CPU bytes; `map_location` moved every tensor to this run's device.
        rng = {name: value.cpu() for name, value in state["rng"].items()}
        torch.set_rng_state(rng["torch"])
        self.shuffle_rng.set_state(rng["shuffle"])
        self.augment_rng.set_state(rng["augment"])
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        self.history = list(state["history"])
        if "last_prediction" in state:  # absent from checkpoints written before prediction_changes existed
            self.last_prediction = state["last_prediction"].to(self.device)

    def save_checkpoint(self, path: str | Path) -> Path:
        """Atomically write the state to `path` (a crash mid-write keeps the previous checkpoint)."""
        state = self.state_dict()
        return atomic_write(path, lambda fh: torch.save(state, fh))

    def load_checkpoint(self, path: str | Path) -> None:
        """Load with `weights_only=True`: a checkpoint can hold tensors and plain data, never code."""
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(
                f"checkpoint {str(path)!r} was refused: it is corrupt or holds objects other than tensors and "
                f"plain data ({first})"
            ) from None
        self.load_state_dict(state)


#: Fields a resumed run may change: where the data is, and how the run is executed and shown, never what it
#: computes. Anything else (data, noise, model, loss, optim, train.epochs: ProSelfLC's t = batches_done / total_batches
#: and the lr schedule depend on it, batches, seed, precision) would silently corrupt the run.
RESUME_MAY_CHANGE = (
    "name", "data.root", "data.download", "train.device", "train.progress", "train.threads",
    "train.eval_batch_size", "train.eval_every", "train.checkpoint_every", "train.compile",
)


def resume_changes(run_dir: str | Path, cfg: RunConfig) -> list[str]:
    """'field: stored -> new' for each field `cfg` changes against `run_dir/config.yaml`.

    Raises a ConfigError listing the changes a resume may not make (everything outside RESUME_MAY_CHANGE).
    """
    path = Path(run_dir) / "config.yaml"

    def resolved(config: RunConfig) -> dict[str, Any]:
        """Flat fields, with the loss's and the dataset's defaults filled in (an unset exp_base is still 16)."""
        tree = config.to_dict()
        tree["loss"] = {**losses.hyperparameters(config.loss.name), **tree["loss"]}
        tree["data"] = {**config.data.options_in_force(), **tree["data"]}
        return dotted.flatten(tree)

    stored = resolved(build_run_config(read_yaml(path), source=str(path)))
    new = resolved(cfg)
    changed = [k for k in dict.fromkeys([*stored, *new]) if stored.get(k) != new.get(k)]
    lines = [f"{k}: {stored.get(k)!r} -> {new.get(k)!r}" for k in changed]
    refused = [line for k, line in zip(changed, lines) if k not in RESUME_MAY_CHANGE]
    if refused:
        raise ConfigError(
            f"--resume: {str(run_dir)!r} was trained with another config, and these changes would corrupt it:\n  "
            + "\n  ".join(refused)
            + "\n(train.epochs sets ProSelfLC's time ratio t and the lr schedule). Resume with the stored values, "
            f"or start a new run with another --out. A resume may change only: {', '.join(RESUME_MAY_CHANGE)}"
        )
    return lines


def train(cfg: RunConfig, run_dir: str | Path | None = None, resume: bool = False) -> list[dict[str, Any]]:
    """Run `cfg` to the end, continuing from `run_dir/checkpoint.pt` when `resume` is set and it exists.

    A resume first compares `cfg` with the run's stored config.yaml (see `resume_changes`): changes that
    would corrupt the run are refused, the allowed ones are printed to stderr.
    """
    checkpoint = Path(run_dir) / "checkpoint.pt" if run_dir is not None else None
    resuming = resume and checkpoint is not None and checkpoint.is_file()
    if resuming and (checkpoint.parent / "config.yaml").is_file():
        for line in resume_changes(checkpoint.parent, cfg):
            print(f"resuming {str(checkpoint.parent)!r} with a changed {line}", file=sys.stderr)
    engine = Engine(cfg, run_dir=run_dir)
    if resuming:
        engine.load_checkpoint(checkpoint)
    return engine.run()
