"""The GPU sweep check's logic on CPU: the session's Ray declares 2 fake GPUs, trials train a small CNN on CPU.

What a GPU alone can show (the packing gain, utilisation, CUDA resume) is measured by running the same check
there; here: every arm runs the paper sweep shortened, counts are exact, the same configurations train in both
packing arms, the killed trial is SIGKILLed, restored and ends identical to its uninterrupted twin, and the
nvidia-smi reading parses its CSV or says it is unavailable.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from benchmarks.gpu_sweep_check import GpuSampler, metrics_differ, parse_nvidia_smi_csv

#: nvidia-smi's CSV form (`--query-gpu=utilization.gpu,memory.used --format=csv -lms 500`): a header with units,
#: values with units, one line per GPU per sample, `[N/A]` where the driver has no reading.
NVIDIA_SMI_CSV = """utilization.gpu [%], memory.used [MiB]
0 %, 1 MiB
97 %, 20312 MiB
utilization.gpu [%], memory.used [MiB]
88 %, 20420 MiB
[N/A], 20420 MiB
"""


def test_nvidia_smi_csv_is_parsed_and_averaged() -> None:
    samples = parse_nvidia_smi_csv(NVIDIA_SMI_CSV)
    assert samples == [(0.0, 1.0), (97.0, 20312.0), (88.0, 20420.0), (None, 20420.0)]
    sampler = GpuSampler(samples=samples)
    assert sampler.mean_utilisation == pytest.approx((0 + 97 + 88) / 3)
    assert sampler.peak_memory == 20420.0
    assert (
        parse_nvidia_smi_csv("NVIDIA-SMI has failed because it couldn't communicate with the driver.\n") == []
    )


def test_an_absent_nvidia_smi_is_reported_as_unavailable() -> None:
    with GpuSampler("nvidia-smi-not-installed") as sampler:
        pass
    assert sampler.unavailable == "nvidia-smi-not-installed not found: GPU utilisation unavailable"
    assert sampler.mean_utilisation is None and sampler.peak_memory is None


def test_metrics_compare_exactly_and_nan_equals_nan() -> None:
    row = {"epoch": 2, "val_accuracy": 0.5, "noisy_fit": float("nan"), "samples_per_s": 10.0}
    assert metrics_differ(row, {**row, "samples_per_s": 99.0}) == 0.0
    assert metrics_differ(row, {**row, "val_accuracy": 0.25}) == 0.25
    assert metrics_differ(row, {**row, "noisy_fit": 0.1}) == float("inf")


@pytest.mark.ray
@pytest.mark.faults
@pytest.mark.slow
def test_the_check_runs_every_arm_on_fake_gpus_and_the_killed_trial_resumes_identical(
    ray_session: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmarks import gpu_sweep_check

    assert gpu_sweep_check.main(["--smoke", "--nvidia-smi", "nvidia-smi-not-installed"]) == 0
    out = capsys.readouterr().out
    for arm in ("gpu1", "gpu0.25", "resume"):
        assert re.search(rf"\| {re.escape(arm)} +\| 2 \(2 full length, [01] hit an error\) +\|", out), out
    assert (
        "trial counts: gpu0.25 2, gpu1 2 (expected 2 each: 2 studies x 1); resume 2 (expected 2): exact"
        in out
    )
    assert "the same 2 configurations in both: yes" in out
    assert re.search(r"packing gain \(gpu=0\.25 vs gpu=1\): \d+\.\d\dx samples/s over wall time", out), out
    assert "GPU utilisation: nvidia-smi-not-installed not found: GPU utilisation unavailable" in out
    assert re.search(
        r"resume: trial \w+ SIGKILLed after epoch 1 of 2, restored from its checkpoint, finished; "
        r"final metrics vs 1 uninterrupted run\(s\) of its config and seed: identical",
        out,
    ), out
