"""Benchmarks, run as `python -m benchmarks <name> [--quick] [...]` or `python -m benchmarks all --quick`.

Each benchmark is a module here exposing `main(argv: list[str]) -> int`; register it in BENCHMARKS.
"""

from __future__ import annotations

#: benchmark name -> module under `benchmarks` exposing main(argv) -> int
BENCHMARKS: dict[str, str] = {
    "throughput": "benchmarks.throughput",
    "search_efficiency": "benchmarks.search_efficiency",
    "tuning_overhead": "benchmarks.tuning_overhead",
    "gpu_packing": "benchmarks.gpu_packing",
    "cluster_utilisation": "benchmarks.cluster_utilisation",
    "paper_recipes": "benchmarks.paper_recipes",
    "gpu_sweep_check": "benchmarks.gpu_sweep_check",
    "selection_certainty": "benchmarks.selection_certainty",
}
