"""The dataset registry, declared below `config` so that config can check `data.name` and its options.

Config validates against this table without importing the loaders (torch, torchvision, the files'
readers) that live above it in `proselflc.data`: the registry imports that package by name the first
time it is asked about its members, and each module there registers its loader into `DATASETS`.
"""

from __future__ import annotations

from proselflc.registry import Registry

#: Every dataset, by `data.name`; the modules of `proselflc.data` register their loaders into it, their keyword
#: arguments after `cfg` being the dataset's options. Per loader: `needs_root` (its files live under data.root;
#: default true), `real_noise` (its training labels are already noisy: no synthetic noise on top).
DATASETS = Registry("dataset", "data", positional=("cfg",), package="proselflc.data")
