"""Training throughput (samples/s) of the Engine vs. the common PyTorch recipe, CIFAR-shaped data, ResNet-18.

Both systems train the same CIFAR ResNet-18 (torchvision, 3x3 stem) with SGD on the same random
uint8 CIFAR-100-shaped images, with the same augmentation (random crop with 4-pixel padding,
horizontal flip, normalisation) and the same precision (bf16 autocast and channels_last on CUDA):

- engine:    `proselflc.training.Engine`; images held as one uint8 tensor on the device, batches
             augmented with batched tensor ops there (`CifarDataset.prepare`).
- reference: the way most CIFAR training scripts are written: a map-style Dataset returning PIL
             images (as `torchvision.datasets.CIFAR100` does), torchvision's PIL transforms, a
             `torch.utils.data.DataLoader` with one worker per available core (persistent,
             pinned memory on CUDA), and a plain training loop.

Each system runs in its own process, so that what one sets for its process (the Engine's CPU
allocator thresholds, the reference's worker processes) cannot help or hurt another. Each runs one
warm-up epoch, then `--epochs` timed epochs; the systems take turns epoch by epoch (in rotating order)
so that a machine whose load drifts slows them alike. samples/s is timed samples over timed wall time
(for the Engine its own `samples_per_s`, which excludes evaluation). Also printed: the model alone on
a fixed device batch with the Engine's settings (channels_last, allocator), the Engine's compute-bound
ceiling. No Ray needed.

    python -m benchmarks throughput [--quick] [--device cpu|cuda] [--samples N] [--workers W] [--model NAME]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader
from torchvision import transforms as T

from proselflc import models
from proselflc.config import build_run_config
from proselflc.data.cifar import LAYOUTS, CifarDataset
from proselflc.training import Engine, resolve_device
from proselflc.training.cpu_memory import keep_freed_memory

NUM_CLASSES = 100
LR, MOMENTUM, WEIGHT_DECAY = 0.1, 0.9, 5e-4


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8), rng.integers(0, NUM_CLASSES, size=n)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def engine_epochs(images: np.ndarray, labels: np.ndarray, args: argparse.Namespace) -> Iterator[float]:
    """The Engine on an in-memory CifarDataset (passed in: data.root is never read); samples/s per epoch."""
    layout = LAYOUTS["cifar100"]
    n_test = max(args.batch_size, len(images) // 10)
    dataset = CifarDataset(
        name="cifar100",
        train_inputs=torch.from_numpy(images),
        train_labels=labels,
        test_inputs=torch.from_numpy(images[:n_test]),
        test_labels=labels[:n_test],
        num_classes=NUM_CLASSES,
        input_shape=(3, 32, 32),
        mean=layout.mean,
        std=layout.std,
    )
    with tempfile.TemporaryDirectory() as unused_root:
        cfg = build_run_config({
            "name": "throughput",
            "data": {"name": "cifar100", "root": unused_root, "val_fraction": 0.0, "augment": True},
            "noise": {"kind": "symmetric", "rate": 0.0},
            "model": {"name": args.model},
            "loss": {"name": "crossentropy"},
            "optim": {"lr": LR, "momentum": MOMENTUM, "weight_decay": WEIGHT_DECAY, "schedule": "constant"},
            "train": {"epochs": 1 + args.epochs, "batch_size": args.batch_size, "eval_batch_size": 1024,
                      "device": args.device, "amp": args.amp, "channels_last": True, "compile": args.compile, "seed": 0,
                      "progress": False, "eval_every": 1},
        })  # fmt: skip
        for row in Engine(cfg, dataset=dataset).epochs():
            yield row["samples_per_s"]


class PILCifar(torch.utils.data.Dataset):
    """What `torchvision.datasets.CIFAR100.__getitem__` does: an HWC uint8 array -> PIL image -> transform."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: T.Compose) -> None:
        self.images = np.ascontiguousarray(images.transpose(0, 2, 3, 1))
        self.labels = labels.astype(np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def _model(name: str, device: torch.device, channels_last: bool) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = models.build(name, NUM_CLASSES, (3, 32, 32)).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    return model.train(), optimizer


def _train_step(
    model: Callable[[torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    amp: bool,
) -> None:
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
        logits = model(x)
    loss = F.cross_entropy(logits.float(), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def reference_epochs(images: np.ndarray, labels: np.ndarray, args: argparse.Namespace) -> Iterator[float]:
    """DataLoader + torchvision PIL transforms + a plain loop (the usual CIFAR script): samples/s/epoch."""
    device = resolve_device(args.device)
    layout = LAYOUTS["cifar100"]
    transform = T.Compose([
        T.RandomCrop(32, padding=4),
        T.RandomHorizontalFlip(),
        T.ToTensor(),
        T.Normalize(layout.mean, layout.std),
    ])  # fmt: skip
    loader = DataLoader(
        PILCifar(images, labels, transform),
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=args.workers,
        pin_memory=device.type == "cuda",
        persistent_workers=args.workers > 0,
        generator=torch.Generator().manual_seed(0),
    )
    model, optimizer = _model(args.model, device, channels_last=device.type == "cuda")  # the usual: NHWC on GPUs only
    amp = device.type == "cuda" and args.amp
    for _ in range(1 + args.epochs):
        start, seen = time.perf_counter(), 0
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            _train_step(model, optimizer, x, y, amp)
            seen += len(y)
        _sync(device)
        yield seen / (time.perf_counter() - start)


def model_only_epochs(images: np.ndarray, labels: np.ndarray, args: argparse.Namespace) -> Iterator[float]:
    """Forward + backward + step on one fixed device batch, as many batches as an epoch, with the Engine's
    settings (channels_last; on CPU its allocator thresholds): its ceiling, no data pipeline."""
    device = resolve_device(args.device)
    if device.type == "cpu":
        keep_freed_memory()
    model, optimizer = _model(args.model, device, channels_last=True)
    x = torch.randn(args.batch_size, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, NUM_CLASSES, (args.batch_size,), device=device)
    amp = device.type == "cuda" and args.amp
    forward = torch.compile(model) if args.compile else model
    steps = max(1, len(labels) // args.batch_size)
    for _ in range(1 + args.epochs):
        _sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            _train_step(forward, optimizer, x, y, amp)
        _sync(device)
        yield steps * args.batch_size / (time.perf_counter() - start)


SYSTEMS: dict[str, Callable[[np.ndarray, np.ndarray, argparse.Namespace], Iterator[float]]] = {
    "engine": engine_epochs,
    "reference": reference_epochs,
    "model_only": model_only_epochs,
}


def _serve(name: str, args: argparse.Namespace, conn: Connection) -> None:
    """In a process of its own: run one more epoch of system `name` per request, answer its samples/s."""
    try:
        images, labels = _images(args.samples, seed=0)
        epochs = SYSTEMS[name](images, labels, args)
        while conn.recv():
            conn.send(("ok", next(epochs)))
    except Exception:  # noqa: BLE001 - sent to the parent, which raises it under the system's name
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


class _System:
    """One system in a spawned process of its own, driven one epoch at a time over a pipe."""

    def __init__(self, name: str, args: argparse.Namespace) -> None:
        ctx = mp.get_context("spawn")  # a clean interpreter: no allocator or thread state inherited
        self.name = name
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(name, args, child), name=f"throughput-{name}")
        self.process.start()
        child.close()

    def epoch(self) -> float:
        self.conn.send(True)
        try:
            status, value = self.conn.recv()
        except EOFError:
            raise RuntimeError(f"the {self.name} process died (exit code {self.process.exitcode})") from None
        if status != "ok":
            raise RuntimeError(f"the {self.name} system failed:\n{value}")
        return value

    def close(self) -> None:
        try:
            self.conn.send(False)
        except OSError:  # already gone
            pass
        self.process.join(timeout=60)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


def measure(args: argparse.Namespace) -> dict[str, float]:
    """samples/s per system over the timed epochs, taken in turns so that drifting load hits all alike."""
    systems = [_System(name, args) for name in SYSTEMS]
    speeds: dict[str, list[float]] = {name: [] for name in SYSTEMS}
    try:
        for epoch in range(1 + args.epochs):
            for system in systems[epoch % 3 :] + systems[: epoch % 3]:  # rotate who goes first: no order bias
                speed = system.epoch()
                if epoch > 0:
                    speeds[system.name].append(speed)
    finally:
        for system in systems:
            system.close()
    # equal samples per epoch: total samples / total time is the harmonic mean of the epoch speeds
    return {name: len(v) / sum(1.0 / s for s in v) for name, v in speeds.items()}


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks throughput", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="few samples: a smoke-size measurement")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument(
        "--samples",
        type=int,
        default=None,
        help="training images (default: 50000 on CUDA, 2048 on CPU; --quick: 4096 / 128)",
    )
    p.add_argument(
        "--epochs", type=int, default=None, help="timed epochs after one warm-up epoch (default 2; quick 1)"
    )
    p.add_argument("--batch-size", type=int, default=None, help="default 128 (CPU --quick: 64)")
    p.add_argument(
        "--workers", type=int, default=_cores(), help="reference DataLoader workers (default: all cores)"
    )
    p.add_argument("--model", default="resnet18",
                   help="registered model both systems train (default resnet18; cnn: a seconds-long smoke run)")
    p.add_argument("--no-amp", dest="amp", action="store_false", help="fp32 on CUDA for both systems")
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the engine's model (train.compile) and the model-only ceiling; the reference stays eager",
    )
    args = p.parse_args(argv)
    try:
        cuda = resolve_device(args.device).type == "cuda"
    except ValueError as exc:
        p.error(str(exc))
    if args.samples is None:
        args.samples = {(True, True): 4096, (True, False): 50000, (False, True): 128, (False, False): 2048}[
            (cuda, args.quick)
        ]
    if args.epochs is None:
        args.epochs = 1 if args.quick else 2
    if args.batch_size is None:
        args.batch_size = 64 if args.quick and not cuda else 128
    try:
        models.check_name(args.model)
    except ValueError as exc:
        p.error(f"--model: {exc}")
    for name in ("samples", "epochs", "batch_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1 (got {getattr(args, name)})")
    if args.workers < 0:
        p.error(f"--workers must be >= 0 (got {args.workers})")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(
        f"throughput: {args.model}, {args.samples} CIFAR-shaped images, batch {args.batch_size}, "
        f"1 warm-up + {args.epochs} timed epoch(s), {device.type} ({name}), {_cores()} cores, "
        f"torch {torch.__version__}, amp={'bf16' if device.type == 'cuda' and args.amp else 'off'}, "
        f"compile={'on' if args.compile else 'off'}"
    )
    speeds = measure(args)
    one, five, _ = os.getloadavg()
    print(f"  (load average {one:.1f} / 1 min, {five:.1f} / 5 min: other work on the cores skews timings)")
    labels = {
        "engine": "engine (on-device data and augmentation)",
        "reference": f"reference (DataLoader, {args.workers} workers, PIL)",
        "model_only": "model only (fixed batch, engine settings)",
    }
    for key, label in labels.items():
        print(f"  {label:<44} {speeds[key]:>10.1f} samples/s")
    ceiling = speeds["model_only"]
    print(
        f"  ratio engine / reference: {speeds['engine'] / speeds['reference']:.2f}x "
        f"(engine at {speeds['engine'] / ceiling:.0%} of the model-only ceiling, "
        f"reference at {speeds['reference'] / ceiling:.0%})"
    )
    return 0
