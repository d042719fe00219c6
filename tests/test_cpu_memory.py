"""The Engine's CPU allocator setting: the buffers a CNN step frees are reused, not page-faulted back in, while
a run trains; afterwards the process returns them again. Each case runs in a fresh interpreter, so the test
session's own allocator is never touched."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import textwrap

import pytest

from proselflc.training.cpu_memory import mallopt_available

STEP_FAULTS = textwrap.dedent(
    """
    import contextlib, json, resource, sys, torch
    from torch import nn
    from proselflc.training.cpu_memory import freed_memory_kept, keep_freed_memory
    if sys.argv[1] == "keep":
        assert keep_freed_memory()
    if sys.argv[1] == "after_run":  # a CPU training run held the setting, then ended
        from proselflc.config import build_run_config
        from proselflc.training import Engine
        Engine(build_run_config({"data": {"limit": 200}, "model": {"name": "mlp", "hidden": 8},
                                 "train": {"epochs": 1, "device": "cpu", "progress": False}})).run()
    scope = freed_memory_kept() if sys.argv[1] == "scoped" else contextlib.nullcontext(True)
    with scope as kept:  # entered before the model exists, as keep_freed_memory() is called above
        assert kept
        torch.manual_seed(0)
        torch.set_num_threads(1)
        # 64 channels x 32 x 32 x batch 128 in float32: 32 MiB activations, as in a CIFAR ResNet's first stage
        model = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
                              nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        x, y = torch.randn(128, 3, 32, 32), torch.randint(0, 10, (128,))
        faults = []
        for _ in range(8):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
            faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    print(json.dumps(faults))
    """
)


def steady_faults_per_step(mode: str) -> float:
    """Median page faults of training steps 3-8 (the first two grow the heap), in a fresh interpreter."""
    out = subprocess.run([sys.executable, "-c", STEP_FAULTS, mode], capture_output=True, text=True, check=True)
    return statistics.median(json.loads(out.stdout)[2:])


ONE_BUFFER = 32 * 2**20 // 4096  # pages of a 32 MiB activation buffer
#: By default every step faults all its activation buffers back in (16 here); with freed memory kept, a step
#: faults none, except a buffer now and then while glibc's heap settles: an order of magnitude fewer at the median.
FEWER = 10


@pytest.mark.skipif(not mallopt_available(), reason="glibc's mallopt is not available on this platform")
@pytest.mark.subprocess
def test_keeping_freed_memory_stops_page_faults_on_every_step():
    default = steady_faults_per_step("default")
    assert default >= 4 * ONE_BUFFER  # glibc unmaps each 32 MiB buffer on free and faults it back in
    assert steady_faults_per_step("keep") <= default / FEWER


@pytest.mark.skipif(not mallopt_available(), reason="glibc's mallopt is not available on this platform")
@pytest.mark.subprocess
def test_the_setting_holds_inside_its_scope_and_is_gone_after_a_training_run():
    after_run = steady_faults_per_step("after_run")
    assert after_run >= 4 * ONE_BUFFER, "the thresholds went back when the run ended"
    assert steady_faults_per_step("scoped") <= after_run / FEWER
