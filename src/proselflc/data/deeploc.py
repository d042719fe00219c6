"""DeepLoc protein subcellular localisation: residue sequences tokenised once into padded int64 ids.

The CSV has columns `input` (residues separated by spaces), `loc` (10 compartments) and `membrane`
(M membrane-bound, S soluble, U unknown); headers may carry stray spaces (" loc"). Tasks:
`loc` (10 classes) and `membrane` (M vs. S, U rows dropped). A column named `set`/`split`/`test`
marking test rows is used when present; otherwise a stratified split with a fixed seed holds out
the `test_fraction` option as the test set, so every run and trial sees the same test proteins.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split

from proselflc.data.base import DATASETS, TEST_FRACTION, Dataset
from proselflc.errors import ConfigError
from proselflc.registry import Param

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from proselflc.config import DataConfig

#: ProtBert's vocabulary, in its order: the built-in tokenizer is interchangeable with Rostlab's.
RESIDUE_VOCAB = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"LAGVESIKRDTPNQFYMHCWXUBZO")
#: Rare amino acids ProtBert maps to X (selenocysteine, Glx, pyrrolysine, Asx).
_RARE = re.compile(r"[UZOB]")
#: File name looked up when data.root is a directory.
CSV_NAME = "deeploc_data.csv"
_SPLIT_COLUMNS = ("set", "split", "test")
_TEST_MARKERS = {"test", "true", "1", "yes"}
SPLIT_SEED = 0
#: The ten DeepLoc compartments, spelled as in the CSV; fixed so a subset of the data keeps 10 classes.
LOC_CLASSES = (
    "Cell.membrane",
    "Cytoplasm",
    "Endoplasmic.reticulum",
    "Extracellular",
    "Golgi.apparatus",
    "Lysosome/Vacuole",
    "Mitochondrion",
    "Nucleus",
    "Peroxisome",
    "Plastid",
)
MEMBRANE_CLASSES = ("M", "S")


def residue_tokenizer() -> PreTrainedTokenizerBase:
    """BERT word-piece tokenizer whose words are single residues (not lower-cased: residues are capitals)."""
    from transformers import BertTokenizer

    return BertTokenizer(vocab={token: i for i, token in enumerate(RESIDUE_VOCAB)}, do_lower_case=False)


def spaced_residues(sequence: str) -> str:
    """Canonical ProtBert input: one upper-case residue per token, rare residues as X.

    Whitespace is removed first and the letters re-spaced, because exported CSVs sometimes lose a
    separator (e.g. "K LL T") and a two-letter word would become an unknown token.
    """
    letters = "".join(str(sequence).split()).upper()
    return " ".join(_RARE.sub("X", letters))


def _csv_path(root: Path) -> Path:
    path = root / CSV_NAME if root.is_dir() else root
    if not path.is_file():
        raise ValueError(
            f"data.root: {str(root)!r} is neither a DeepLoc CSV file nor a directory holding {CSV_NAME}"
        )
    return path


def read_table(path: Path) -> pd.DataFrame:
    """The CSV with stripped, lower-case column names; checks the required columns are there."""
    try:
        frame = pd.read_csv(path, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"data.root: {str(path)!r} is not a readable DeepLoc CSV (one row per protein with the columns "
            f"input, loc, membrane): {str(exc).strip()}"
        ) from None
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    missing = [c for c in ("input", "loc", "membrane") if c not in frame.columns]
    if missing:
        raise ValueError(
            f"data.root: {str(path)!r} lacks column(s) {missing}; a DeepLoc CSV has input, loc, membrane "
            f"(found: {list(frame.columns)})"
        )
    for column in ("loc", "membrane"):
        frame[column] = frame[column].astype(str).str.strip()
    return frame


def _task_labels(frame: pd.DataFrame, task: str) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    if task == "membrane":
        frame = frame[frame["membrane"] != "U"]
        classes = MEMBRANE_CLASSES
    else:
        classes = LOC_CLASSES
    unknown = sorted(set(frame[task]) - set(classes))
    if unknown:
        raise ValueError(
            f"DeepLoc column {task!r} holds unknown label(s) {unknown[:5]}; allowed: {', '.join(classes)}"
        )
    lookup = {c: i for i, c in enumerate(classes)}
    return frame.reset_index(drop=True), frame[task].map(lookup).to_numpy(np.int64), list(classes)


def _test_mask(frame: pd.DataFrame, labels: np.ndarray, test_fraction: float) -> np.ndarray:
    for column in _SPLIT_COLUMNS:
        if column in frame.columns:
            return frame[column].astype(str).str.strip().str.lower().isin(_TEST_MARKERS).to_numpy()
    n_test = int(np.ceil(test_fraction * len(labels)))
    _, test_idx = train_test_split(
        np.arange(len(labels)), test_size=n_test, random_state=SPLIT_SEED, stratify=_stratify(labels, n_test)
    )
    mask = np.zeros(len(labels), dtype=bool)
    mask[test_idx] = True
    return mask


def _stratify(labels: np.ndarray, n_test: int) -> np.ndarray | None:
    """Stratify when scikit-learn can (2+ members per class, room for every class on both sides), else not."""
    counts = np.bincount(labels)
    present = counts[counts > 0]
    feasible = present.min() >= 2 and len(present) <= min(n_test, len(labels) - n_test)
    return labels if feasible else None


def _tokenize(tokenizer: PreTrainedTokenizerBase, sequences: list[str], max_length: int) -> torch.Tensor:
    encoded = tokenizer(
        sequences, padding="max_length", truncation=True, max_length=max_length, return_tensors="pt"
    )
    return encoded["input_ids"].to(torch.int64)


def load_tokenizer(name_or_path: str | None) -> PreTrainedTokenizerBase:
    """The built-in residue tokenizer, or `AutoTokenizer.from_pretrained` (e.g. a model directory)."""
    if name_or_path is None:
        return residue_tokenizer()
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"data.tokenizer: cannot load {name_or_path!r} (not a tokenizer directory, or a hub name "
            f"that needs internet): {str(exc).splitlines()[0]}"
        ) from None
    if tokenizer.pad_token_id is None:
        raise ValueError(f"data.tokenizer: {name_or_path!r} has no pad token; padded batches need one")
    return tokenizer


@DATASETS.register(
    "deeploc",
    params={
        "task": Param(choices=("loc", "membrane")),
        "max_length": Param(low=8, help="tokens per protein, incl. special tokens"),
        "tokenizer": Param(help="a tokenizer name or path; default: the built-in residue tokenizer"),
        "test_fraction": TEST_FRACTION,
    },
)
def load(
    cfg: DataConfig, task: str = "loc", max_length: int = 512, tokenizer: str | None = None, test_fraction: float = 0.25
) -> Dataset:
    """`task` labels of the DeepLoc CSV at `cfg.root` (a file, or a directory with deeploc_data.csv).

    `max_length` is tokens per protein (special tokens included); `tokenizer` a tokenizer name or path (default:
    the built-in residue tokenizer); `test_fraction` the share held out as clean test without a set/split/test column.
    """
    if tokenizer is not None and not isinstance(tokenizer, str):
        raise ConfigError(f"data.tokenizer = {tokenizer!r}: expected a tokenizer name or path, or null (the built-in one)")
    frame = read_table(_csv_path(Path(cfg.root).expanduser()))
    frame, labels, classes = _task_labels(frame, task)
    if len(frame) < 4:
        raise ValueError(
            f"data.root: only {len(frame)} usable rows for task {task!r}; at least 4 are needed"
        )
    test = _test_mask(frame, labels, test_fraction)
    tok = load_tokenizer(tokenizer)
    ids = _tokenize(tok, [spaced_residues(s) for s in frame["input"]], max_length)
    test_index = torch.from_numpy(np.flatnonzero(test))
    train_index = torch.from_numpy(np.flatnonzero(~test))
    return Dataset(
        name="deeploc",
        train_inputs=ids[train_index],
        train_labels=labels[~test],
        test_inputs=ids[test_index],
        test_labels=labels[test],
        num_classes=len(classes),
        input_shape=(max_length,),
        classes=classes,
        model_kwargs={"vocab_size": len(tok), "pad_token_id": int(tok.pad_token_id)},
    )
