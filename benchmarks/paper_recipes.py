"""The papers' recipes on a GPU: samples/s, peak GPU memory and the time a full run takes, per paper config.

Each CIFAR-100 config under `configs/paper/` (ResNet-18 and the authors' ShuffleNetV2, CE/LS/CP/LC/ProSelfLC,
symmetric and superclass noise) trains `--epochs` epochs as written (class-balanced batches, gradient
accumulation, rotation, fp32; its lr milestones moved to the same fraction of the shorter run) on a CIFAR-100 copy in torchvision's pickle
format with random pixels and the real set sizes (50,000 training and 10,000 test images; no dataset can be
downloaded where this is run), through the project's own loader. Per config it prints the training samples/s
of the last epoch (the Engine's own, evaluation excluded), the seconds a whole epoch took (training plus the
evaluation of the clean test set and the noisy subset), the peak GPU memory PyTorch allocated, and the hours
the config's full run on CIFAR-100 would take at that pace (its `train.epochs` x the epoch's seconds, scaled to
50,000 images when fewer were generated), with each config's
samples/s as a ratio to cross entropy's on the same network, measured in the same run.

Random pixels change neither the work of a step nor its memory, so the figures hold for the real CIFAR-100;
only the accuracies are meaningless here. No Ray needed.

    python -m benchmarks paper_recipes [--quick] [--device cuda] [--epochs 2] [--match resnet18]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks._harness import load, require_positive, table
from benchmarks.cifar_files import write_cifar100
from proselflc.config import RunConfig, load_run_config
from proselflc.training import Engine, resolve_device

PAPER = Path(__file__).resolve().parents[1] / "configs" / "paper"
#: CIFAR-100's training set: a full run's epochs are this long.
FULL_TRAIN_IMAGES = 50_000


def paper_configs(match: str) -> list[Path]:
    """The CIFAR-100 single-run paper configs whose file name contains `match`, in name order."""
    return [p for p in sorted(PAPER.glob("cifar100_*.yaml")) if match in p.stem]


def short_milestones(full: RunConfig, epochs: int, train_images: int) -> list[int]:
    """The paper schedule compressed into `epochs` epochs on `train_images` images: each lr milestone at the same
    fraction of the shorter run (milestones counted in iterations also shrink with the generated set)."""
    fraction = epochs / full.train.epochs
    if full.optim.milestones_unit == "iterations":
        fraction *= train_images / FULL_TRAIN_IMAGES
    return [max(1, round(m * fraction)) for m in full.optim.milestones]


def measure(path: Path, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Train the first `args.epochs` epochs of one paper config on `root`; its pace and peak memory."""
    data = [f"data.root={root}", "data.download=false"]
    full = load_run_config(path, data)
    milestones = short_milestones(full, args.epochs, args.train_images)
    overrides = [*data, f"train.epochs={args.epochs}", f"train.device={args.device}", "train.progress=false",
                 f"optim.milestones={milestones}"]
    if args.quick:
        # The recipe on a few hundred images: batches of 4 classes x 2 and a milestone inside the epoch.
        overrides += ["train.batch_size=8", "train.classes_per_batch=4", "optim.milestones=[2]"]
    cfg = load_run_config(path, overrides)
    full_epochs = full.train.epochs
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    engine = Engine(cfg)
    starts, rows = [time.perf_counter()], []
    for row in engine.epochs():
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        starts.append(time.perf_counter())
        rows.append(row)
    epoch_s = starts[-1] - starts[-2]
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    del engine
    return {
        "config": path.stem, "network": cfg.model.name, "loss": cfg.loss.name,
        "samples_per_s": float(rows[-1]["samples_per_s"]), "epoch_s": epoch_s,
        "peak_gib": peak,
        # Training and evaluation both scale with the set size (the test set is a fifth of it, as CIFAR's).
        "full_h": full_epochs * epoch_s * FULL_TRAIN_IMAGES / args.train_images / 3600, "full_epochs": full_epochs,
    }


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks paper_recipes", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="ResNet-18 symmetric configs only, 320 images, 1 epoch")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per config, the last one timed (default 2)")
    p.add_argument("--match", default=None, help="only configs whose name contains this (default: every one)")
    p.add_argument("--train-images", type=int, default=None, help="generated training images (default 50000)")
    args = p.parse_args(argv)
    require_positive(p, args, "epochs", "train_images")
    defaults = {"epochs": (2, 1), "train_images": (FULL_TRAIN_IMAGES, 320), "match": ("", "resnet18_crossentropy_symm")}
    for name, (full, quick) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    configs = paper_configs(args.match)
    if not configs:
        print(f"paper_recipes: no config in {PAPER} matches --match {args.match!r}")
        return 2
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    test_images = max(20, args.train_images // 5)
    print(f"paper_recipes: {len(configs)} configs, {args.epochs} epoch(s) each on {args.train_images} generated "
          f"CIFAR-100 training images ({test_images} test), {name}, torch {torch.__version__}; {load()}")
    results = []
    with tempfile.TemporaryDirectory(prefix="paper-recipes-") as tmp:
        write_cifar100(Path(tmp), n_train=args.train_images, n_test=test_images)
        for path in configs:
            print(f"  {path.stem}: ", end="", flush=True)  # an error below then names its config
            r = measure(path, Path(tmp), args)
            results.append(r)
            print(f"{r['samples_per_s']:.0f} samples/s, epoch {r['epoch_s']:.1f} s", flush=True)
    reference = {r["network"]: r["samples_per_s"] for r in results if r["loss"] == "crossentropy"}
    rows = [
        [r["config"], f"{r['samples_per_s']:.0f}",
         f"{r['samples_per_s'] / reference[r['network']]:.2f}x" if r["network"] in reference else "-",
         f"{r['epoch_s']:.1f}", "-" if r["peak_gib"] != r["peak_gib"] else f"{r['peak_gib']:.2f}",
         f"{r['full_h']:.2f} ({r['full_epochs']} ep.)"]
        for r in results
    ]
    print(table(["config", "train samples/s", "vs. CE", "epoch s (train+eval)", "peak GPU GiB", "full run h"],
                rows))
    return 0
