"""The paper sweep on a real GPU through Ray Tune: fractional packing measured, a trial's worker killed and resumed.

Three sweeps of the CIFAR-100 ResNet-18 paper sweep (`configs/paper/paper_cifar100_resnet18_symmetric.yaml`: its
base recipe as written, its search spaces) on CIFAR-100 files in torchvision's format with random pixels (the
benchmarks' writer), shortened to a few epochs, at 40% symmetric noise, crossentropy and proselflc, random search
(seeded, so both arms train the same configurations), no early stopping, no final re-runs:

1. 2 studies x `--trials` trials at `resources.gpu: 1`, one trial per GPU;
2. the same trials at `gpu: 0.25` (four trials share a GPU);
3. one config and seed trained `1 + --uninterrupted` times at `gpu: 1`, checkpointing every epoch: the first trial
   to reach epoch `--kill-after` has its worker SIGKILLed there (it waits at that epoch for the kill: no timer),
   Ray retries it from its checkpoint, and the sweep completes.

While each arm runs, `nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv -lms 500` samples the GPU.
It prints each arm's wall time, samples/s (all trials' training samples over the wall time, and the trials' own
training samples/s summed: free of worker start-up), mean GPU utilisation and peak memory, exact trial counts, the
packing gain, and whether the killed trial ended with the same metrics as the uninterrupted runs of its config and
seed.

    python -m benchmarks gpu_sweep_check                       # one GPU (sized for <= 8 min; not yet run on one)
    python -m benchmarks gpu_sweep_check --smoke --fake-gpus 2  # CPU: the logic only (a small CNN, 128 images)
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from typing_extensions import Self

from benchmarks._harness import TrialRecord, load, quiet, read_experiment, require_positive, table
from benchmarks.cifar_files import write_cifar100
from benchmarks.paper_recipes import PAPER, short_milestones
from proselflc import ray_compat  # local Ray on 127.0.0.1 only

SWEEP = PAPER / "paper_cifar100_resnet18_symmetric.yaml"
METHODS = ("crossentropy", "proselflc")
NVIDIA_SMI = "nvidia-smi"
QUERY = ["--query-gpu=utilization.gpu,memory.used", "--format=csv", "-lms", "500"]


# -- GPU sampling ----------------------------------------------------------------------------------------------


def parse_nvidia_smi_csv(text: str) -> list[tuple[float | None, float | None]]:
    """(utilisation %, memory used MiB) per line of `nvidia-smi --query-gpu=utilization.gpu,memory.used
    --format=csv` output (one line per GPU per sample); headers skipped, `[N/A]`-style values as None."""

    def number(cell: str) -> float | None:
        value = cell.strip().split(" ")[0]
        try:
            return float(value)
        except ValueError:
            return None

    samples = []
    for line in text.splitlines():
        cells = line.split(",")
        if len(cells) != 2 or line.startswith("utilization.gpu"):
            continue
        util, memory = number(cells[0]), number(cells[1])
        if util is not None or memory is not None:
            samples.append((util, memory))
    return samples


@dataclass
class GpuSampler:
    """nvidia-smi sampling every 500 ms while a block runs; where the binary is absent, says so (no figures)."""

    binary: str = NVIDIA_SMI
    samples: list[tuple[float | None, float | None]] = field(default_factory=list)
    unavailable: str | None = None

    def __enter__(self) -> Self:
        path = shutil.which(self.binary)
        if path is None:
            self.unavailable = f"{self.binary} not found: GPU utilisation unavailable"
            return self
        # Line-buffered where stdbuf exists, so no sample waits in a buffer when the sampler is stopped.
        prefix = [stdbuf, "-oL"] if (stdbuf := shutil.which("stdbuf")) else []
        self._out = tempfile.TemporaryFile(mode="w+")
        self._proc = subprocess.Popen(
            [*prefix, path, *QUERY], stdout=self._out, stderr=subprocess.STDOUT, text=True
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self.unavailable is not None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)  # nvidia-smi's loop ends on Ctrl+C and flushes
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._out.seek(0)
        text = self._out.read()
        self._out.close()
        self.samples = parse_nvidia_smi_csv(text)
        if not self.samples:
            self.unavailable = f"{self.binary} gave no samples: {text.strip()[:200]!r}"

    @property
    def mean_utilisation(self) -> float | None:
        values = [u for u, _ in self.samples if u is not None]
        return sum(values) / len(values) if values else None

    @property
    def peak_memory(self) -> float | None:
        values = [m for _, m in self.samples if m is not None]
        return max(values) if values else None


# -- the sweeps ------------------------------------------------------------------------------------------------


def epoch_samples(base: dict[str, Any], images: int) -> int:
    """Training examples one epoch of `base` processes on `images` generated images (the Engine's rule: the
    validation split held out; class-balanced batches are all full)."""
    train = images - round(float(base["data"].get("val_fraction", 0.0)) * images)
    batch = int(base["train"]["batch_size"])
    return (train // batch) * batch if base["train"].get("sampler") == "class_balanced" else train


def sweep_raw(args: argparse.Namespace, root: Path, storage: Path, name: str, gpu: float) -> dict[str, Any]:
    """The paper sweep file, shortened: `--epochs` epochs, 40% noise, METHODS, seeded random search, no ASHA."""
    from proselflc.config import load_run_config, read_yaml

    raw = read_yaml(SWEEP)
    full = load_run_config(PAPER / raw["base"], [f"data.root={root}", "data.download=false"])
    overrides = {**raw.get("overrides", {}), "data.root": str(root), "data.download": False,
                 "optim.milestones": short_milestones(full, args.epochs, args.train_images)}  # fmt: skip
    if args.amp:
        overrides["train.amp"] = True
    if (
        args.smoke
    ):  # a small CNN and batches of 4 classes x 2 on a few hundred images: the logic, not the speed
        overrides.update({"model.name": "cnn", "model.width": 8, "train.batch_size": 8, "train.classes_per_batch": 4,
                          "optim.milestones": [2]})  # fmt: skip
    raw.update(
        name=name, overrides=overrides, noise={"kind": "symmetric", "rates": [0.4]},
        methods={m: raw["methods"][m] for m in METHODS}, num_samples=args.trials, asha={"max_t": args.epochs},
        scheduler={"name": "fifo"}, searcher={"name": "random", "seed": 0}, final_seeds=0,
        resources={"cpu": args.cpus_per_trial, "gpu": gpu}, per_study_concurrency=args.trials,
        storage_path=str(storage), max_failures=0,
    )  # fmt: skip
    return raw


@dataclass
class Arm:
    """One sweep's outcome: its trials, wall time, samples trained and what the GPU sampler saw."""

    name: str
    trials: list[TrialRecord]
    wall: float
    samples: int
    gpu: GpuSampler
    finished: bool

    @property
    def summed_speed(self) -> float:
        """The trials' own training samples/s (the Engine's, mean over epochs), summed over trials."""
        speeds = [[float(r["samples_per_s"]) for r in t.rows if "samples_per_s" in r] for t in self.trials]
        return sum(sum(s) / len(s) for s in speeds if s)


def run_arm(
    args: argparse.Namespace, root: Path, storage: Path, name: str, gpu: float, **changes: Any
) -> Arm:
    """Run one sweep (the paper sweep shortened, `changes` applied) under the GPU sampler."""
    from proselflc.sweep_contract import EXPERIMENT_DIR, read_manifest
    from proselflc.tuning import build_sweep_config, run_sweep

    trial_function = changes.pop("trial_function", None)
    raw = {**sweep_raw(args, root, storage, name, gpu), **changes}
    sweep = build_sweep_config(raw, source=str(SWEEP), root=PAPER)
    base = sweep.study_config(sweep.noise.rates[0], sweep.methods[0])
    extra = {"trial_function": trial_function} if trial_function else {}
    with GpuSampler(args.nvidia_smi) as sampler:
        start = time.time()
        sweep_dir = run_sweep(sweep, log=quiet, **extra)
        wall = time.time() - start
    trials = read_experiment(Path(sweep_dir) / EXPERIMENT_DIR)
    epochs = sum(t.epochs for t in trials)
    return Arm(
        name,
        trials,
        wall,
        epochs * epoch_samples(base, args.train_images),
        sampler,
        read_manifest(Path(sweep_dir)).finished,
    )


# -- the kill --------------------------------------------------------------------------------------------------


def killed_once(params: dict[str, Any], *, marker: str, after: int, **kwargs: Any) -> None:
    """The platform's trial (`train_engine`), except that the first trial to report epoch `after` (with its
    checkpoint) claims `marker` (its pid and trial id, written atomically), then waits there to be SIGKILLed.
    Its retry, restored from the checkpoint, and every other trial train as usual."""
    from ray import tune

    from proselflc.trainables import train_engine

    report = tune.report
    first_attempt = tune.get_checkpoint() is None

    def report_then_wait(metrics: dict[str, Any], **options: Any) -> None:
        report(metrics, **options)
        if metrics["epoch"] != after or not first_attempt or os.path.exists(marker):
            return
        claim = f"{marker}.{os.getpid()}"
        Path(claim).write_text(f"{os.getpid()} {tune.get_context().get_trial_id()}")
        try:
            os.link(claim, marker)  # atomic: one trial only
        except FileExistsError:
            return
        threading.Event().wait(600)  # SIGKILLed here; were it not, the check reports no kill

    tune.report = report_then_wait
    try:
        train_engine(params, **kwargs)
    finally:
        tune.report = report


def kill_when_due(
    experiment: Path, marker: Path, after: int, killed: list[str], stop: threading.Event
) -> None:
    """SIGKILL the worker that claimed `marker` once the driver has logged its row for epoch `after`."""
    while not stop.is_set():
        if marker.exists():
            pid, trial_id = marker.read_text().split()
            for result in experiment.glob(f"*{trial_id}*/result.json"):
                if any(_epoch(line) == after for line in result.read_text().splitlines()):
                    os.kill(int(pid), signal.SIGKILL)
                    killed.append(trial_id)
                    return
        stop.wait(0.05)


def _epoch(line: str) -> int | None:
    """The epoch of one result.json line; None for a line still being written."""
    import json

    try:
        return json.loads(line).get("epoch")
    except json.JSONDecodeError:
        return None


def metrics_differ(a: dict[str, Any], b: dict[str, Any]) -> float:
    """Largest absolute difference between two rows' metrics (timing aside); NaN equals NaN."""
    from proselflc.training import METRIC_KEYS

    worst = 0.0
    for key in METRIC_KEYS:
        if key == "samples_per_s" or key not in a or key not in b:
            continue
        x, y = float(a[key]), float(b[key])
        if not (math.isnan(x) and math.isnan(y)):
            worst = max(worst, abs(x - y) if not (math.isnan(x) or math.isnan(y)) else math.inf)
    return worst


def run_kill_arm(args: argparse.Namespace, root: Path, storage: Path) -> tuple[Arm, str | None]:
    """Sweep 3: one config and seed, `1 + --uninterrupted` trials at gpu 1, the first one killed mid-trial."""
    from proselflc.config import load_run_config, read_yaml
    from proselflc.sweep_contract import EXPERIMENT_DIR

    name = "resume"
    marker = storage / "kill-me"
    killed: list[str] = []
    stop = threading.Event()
    killer = threading.Thread(
        target=kill_when_due,
        daemon=True,
        args=(storage / name / EXPERIMENT_DIR, marker, args.kill_after, killed, stop),
    )
    killer.start()
    try:
        # One value to "search": every trial trains the same config and seed (an empty space would run one trial).
        lr = float(load_run_config(PAPER / read_yaml(SWEEP)["base"], ["data.download=false"]).optim.lr)
        arm = run_arm(
            args, root, storage, name, 1.0, methods={"crossentropy": {"search": {"optim.lr": {"type": "choice", "values": [lr]}}}},
            num_samples=1 + args.uninterrupted, per_study_concurrency=1 + args.uninterrupted, checkpoint_every=1,
            max_failures=1, trial_function=functools.partial(killed_once, marker=str(marker), after=args.kill_after),
        )  # fmt: skip
    finally:
        stop.set()
        killer.join(timeout=5)
    return arm, (killed[0] if killed else None)


def resume_verdict(arm: Arm, victim: str | None, epochs: int, after: int) -> tuple[bool, str]:
    """Did the killed trial restore (not restart), finish, and end where its uninterrupted twins did?"""
    if victim is None:
        return False, "no trial was killed (none reached the kill epoch)"
    killed = [t for t in arm.trials if t.trial_id == victim]
    others = [t for t in arm.trials if t.trial_id != victim and t.rows]
    if not killed or not others:
        return False, f"trial {victim} or its uninterrupted twins left no results"
    rows = killed[0].rows
    seen = [int(r["epoch"]) for r in rows]
    # Restored from the checkpoint: Ray's iteration count went on, no epoch before the kill ran twice (the row of
    # the kill epoch may be reported again on restore), and every epoch is there.
    restored = rows[-1].get("iterations_since_restore", 0) < rows[-1].get("training_iteration", 0)
    complete = sorted(set(seen)) == list(range(1, epochs + 1))
    if not (
        restored and complete and all(seen.count(e) == 1 for e in range(1, after)) and seen.count(after) <= 2
    ):
        return (
            False,
            f"trial {victim} did not resume from its checkpoint to epoch {epochs} (epochs seen {seen})",
        )
    diffs = [metrics_differ(rows[-1], t.last) for t in others]
    twins = [metrics_differ(a.last, b.last) for i, a in enumerate(others) for b in others[i + 1 :]]
    same = min(diffs) == 0.0
    words = "identical" if same else f"DIFFERENT (largest difference {min(diffs):.3g})"
    text = (
        f"trial {victim} SIGKILLed after epoch {after} of {epochs}, restored from its checkpoint, finished; "
        f"final metrics vs {len(others)} uninterrupted run(s) of its config and seed: {words}"
    )
    if twins:
        text += f" (the uninterrupted runs among themselves: largest difference {max(twins):.3g})"
    return same, text


# -- command line ----------------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks gpu_sweep_check", description=__doc__.splitlines()[0]
    )
    p.add_argument(
        "--smoke",
        "--quick",
        action="store_true",
        help="CPU-sized: a small CNN, 128 images, 2 epochs, 1 trial per study",
    )
    p.add_argument("--trials", type=int, default=None, help="trials per study (default 4; smoke 1)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per trial (default 3; smoke 2)")
    p.add_argument("--train-images", type=int, default=None, help="generated training images (default 20000)")
    p.add_argument("--cpus-per-trial", type=float, default=None, help="resources.cpu (default 2; smoke 0.5)")
    p.add_argument(
        "--kill-after", type=int, default=None, help="epoch the killed trial dies after (default 2; smoke 1)"
    )
    p.add_argument(
        "--uninterrupted",
        type=int,
        default=None,
        help="uninterrupted runs of the killed trial's config (default 2; smoke 1)",
    )
    p.add_argument("--amp", action="store_true", help="bf16 autocast (the paper recipe trains in fp32)")
    p.add_argument(
        "--fake-gpus", type=int, default=0, help="declare N GPUs to a local Ray (CPU machines: logic only)"
    )
    p.add_argument("--nvidia-smi", default=NVIDIA_SMI, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    require_positive(p, args, "trials", "epochs", "train_images", "kill_after", "uninterrupted")
    defaults = {"trials": (4, 1), "epochs": (3, 2), "train_images": (20_000, 128), "cpus_per_trial": (2.0, 0.5),
                "kill_after": (2, 1), "uninterrupted": (2, 1)}  # fmt: skip
    for name, (full, smoke) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, smoke if args.smoke else full)
    if args.kill_after >= args.epochs:
        p.error(f"--kill-after {args.kill_after} must be below --epochs {args.epochs}")
    return args


def _mean_util(arm: Arm) -> str:
    util = arm.gpu.mean_utilisation
    return "unavailable" if util is None else f"{util:.0f}% ({len(arm.gpu.samples)} samples)"


def main(argv: list[str]) -> int:
    import ray
    import torch

    args = parse_args(argv)
    started = not ray.is_initialized()
    if started:
        ray_compat.init_on_loopback(
            num_gpus=args.fake_gpus or None,
            include_dashboard=False,
            logging_level="WARNING",
            log_to_driver=False,
        )
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        if gpus < 1:
            print(
                "gpu_sweep_check: the Ray cluster has no GPU; run it where one is, or pass --fake-gpus 2 to "
                "exercise the check's logic on CPU"
            )
            return 0 if args.smoke else 2  # `python -m benchmarks all --quick` on a machine without a GPU
        device = (
            torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU (fake GPUs: no GPU figures)"
        )
        print(
            f"gpu_sweep_check: {SWEEP.relative_to(PAPER.parents[1])} (crossentropy, proselflc at 40% symmetric "
            f"noise), {args.trials} trials per study x {args.epochs} epochs on {args.train_images} generated CIFAR-100 "
            f"images{' (smoke: small CNN)' if args.smoke else ''}, {'bf16 autocast' if args.amp else 'fp32'}; {gpus:g} GPU(s) in Ray, trials on {device}; "
            f"torch {torch.__version__}, ray {ray.__version__}; {load()}",
            flush=True,
        )
        with tempfile.TemporaryDirectory(prefix="gpu-sweep-check-") as tmp:
            root, storage = Path(tmp) / "data", Path(tmp) / "sweeps"
            write_cifar100(root, n_train=args.train_images, n_test=max(20, args.train_images // 5))
            # The baseline first: the packed arm then starts more fresh workers than it finds idle (conservative).
            whole = run_arm(args, root, storage, "gpu1", 1.0)
            packed = run_arm(args, root, storage, "gpu0.25", 0.25)
            resumed, victim = run_kill_arm(args, root, storage)
        return report(args, gpus, packed, whole, resumed, victim)
    finally:
        if started:
            ray.shutdown()


def report(
    args: argparse.Namespace, gpus: float, packed: Arm, whole: Arm, resumed: Arm, victim: str | None
) -> int:
    """Print the tables and verdicts; 0 when every count is exact, the sweeps finished and the resume matched."""
    expected = len(METHODS) * args.trials
    full_length = all(t.epochs == args.epochs for arm in (packed, whole, resumed) for t in arm.trials)
    rows = []
    for arm, at_once in ((whole, gpus), (packed, gpus / 0.25), (resumed, gpus)):
        # Full length: a retried trial counts once it finished (its first attempt's error.txt stays in its dir).
        done = sum(1 for t in arm.trials if t.epochs == args.epochs)
        memory = arm.gpu.peak_memory
        rows.append([arm.name, f"{len(arm.trials)} ({done} full length, {sum(t.errored for t in arm.trials)} hit an error)",
                     f"{at_once:g}", f"{arm.wall:.1f}", f"{arm.samples / arm.wall:.0f}", f"{arm.summed_speed:.0f}",
                     _mean_util(arm), "-" if memory is None else f"{memory:.0f}"])  # fmt: skip
    print(
        table(
            [
                "sweep",
                "trials",
                "GPU allows at once",
                "wall s",
                "samples/s (all trials / wall)",
                "samples/s summed over trials",
                "mean GPU util",
                "peak GPU MiB",
            ],
            rows,
        )
    )
    if packed.gpu.unavailable:
        print(f"GPU utilisation: {packed.gpu.unavailable}")
    same_configs = sorted(map(repr, (t.params for t in packed.trials))) == sorted(
        map(repr, (t.params for t in whole.trials))
    )
    print(
        f"packing gain (gpu=0.25 vs gpu=1): {packed.samples / packed.wall / (whole.samples / whole.wall):.2f}x "
        f"samples/s over wall time, {packed.summed_speed / whole.summed_speed:.2f}x summed over trials; the same "
        f"{len(packed.trials)} configurations in both: {'yes' if same_configs else 'no'}"
    )
    counts = {arm.name: len(arm.trials) for arm in (packed, whole)}
    exact = (
        full_length
        and all(n == expected for n in counts.values())
        and len(resumed.trials) == 1 + args.uninterrupted
    )
    print(
        f"trial counts: gpu0.25 {counts['gpu0.25']}, gpu1 {counts['gpu1']} (expected {expected} each: "
        f"{len(METHODS)} studies x {args.trials}); resume {len(resumed.trials)} (expected {1 + args.uninterrupted}): "
        f"{'exact' if exact else 'WRONG'}, every trial full length: {'yes' if full_length else 'NO'}"
    )
    finished = all(arm.finished for arm in (packed, whole, resumed))
    print(f"every sweep finished: {'yes' if finished else 'NO'}")
    same, verdict = resume_verdict(resumed, victim, args.epochs, args.kill_after)
    print(f"resume: {verdict}")
    return 0 if exact and finished and same and same_configs else 1
