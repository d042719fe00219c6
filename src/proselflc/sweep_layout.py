"""Names in a sweep directory that the tuning writes and the analysis reads (kept free of Ray imports).

Each study's search is its own Ray Tune experiment (`<study>/search/`). The final re-runs of every
study share one experiment (`final/`): one Tuner instead of one per study saves a trial actor's
start-up (seconds: it imports torch and Ray Tune) per study. A final trial's config is
`{FINAL_RUN: {STUDY: "<kind>-<rate>/<method>", "<dotted.key>": value, ..., "train.seed": s}}`.
"""

from __future__ import annotations

FINAL_DIR = "final"
FINAL_RUN = "final_run"
STUDY = "study"
