"""A table of your own (CSV, TSV or Parquet, read by pandas): feature columns or a text column, a label column,
and optionally a clean-label column.

    data:
      name: table
      root: data/reviews.csv         # the training table
      text_column: review            # or feature_columns: [x1, x2, ...] (default: every numeric column)
      label_column: label            # the labels as collected (noisy)
      clean_label_column: verified   # optional: the true labels, where known
      test: data/reviews_test.csv    # optional: a table with clean labels for the test set
    noise: {kind: none}              # the label column's own noise, used as given

With a clean-label column, which examples are noisy is known, so noisy_fit / noisy_corrected / clean_fit are
computed, and without a `test` table `data.test_fraction` of the rows is held out as a clean test set. Without
one they are absent (the report says why) and, without a `test` table, so are the test metrics: no clean label
is made up. `labels: clean` says the label column is correct, so synthetic noise may be added to it. Text
becomes TF-IDF features (scikit-learn, fitted on the training rows); numbers are standardised with the
training rows' mean and spread. The rows live in memory, as tensors, like digits.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from proselflc.data.base import DATASETS, TEST_FRACTION, Dataset
from proselflc.errors import ConfigError
from proselflc.registry import Param

if TYPE_CHECKING:
    import pandas as pd

    from proselflc.config import DataConfig

#: Fixed so that every run, trial and seed holds out the same clean test rows.
SPLIT_SEED = 0


def read_table(path: str | Path, field: str) -> pd.DataFrame:
    """A CSV (.csv), TSV (.tsv) or Parquet (.parquet, .pq) file as a DataFrame; a ConfigError naming `field`."""
    import pandas as pd

    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"{field} = {str(path)!r}: no such file (a CSV, TSV or Parquet table)")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if suffix in (".csv", ".tsv"):
        return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
    raise ConfigError(f"{field} = {str(path)!r}: unknown table format {suffix!r}; use .csv, .tsv, .parquet or .pq")


def _column(frame: pd.DataFrame, name: str, option: str, where: str) -> pd.Series:
    if name not in frame.columns:
        raise ConfigError(
            f"data.{option} = {name!r}: {where} has no such column; its columns: {', '.join(map(str, frame.columns))}"
        )
    column = frame[name]
    if column.isna().any():
        raise ConfigError(f"data.{option} = {name!r}: {where} has {int(column.isna().sum())} empty cell(s) in it")
    return column


def _features(
    train: pd.DataFrame, test: pd.DataFrame, text_column: str | None, feature_columns: list[str] | None,
    taken: set[str], max_features: int, where: str,
) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) float32 feature matrices: TF-IDF of the text column, or the standardised numeric columns."""
    if text_column is not None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        vectoriser = TfidfVectorizer(max_features=max_features)
        x_train = vectoriser.fit_transform(_column(train, text_column, "text_column", where).astype(str))
        x_test = vectoriser.transform(test[text_column].astype(str)) if len(test) else x_train[:0]
        return x_train.toarray().astype(np.float32), x_test.toarray().astype(np.float32)
    if feature_columns is None:
        feature_columns = [c for c in train.columns if c not in taken and np.issubdtype(train[c].dtype, np.number)]
        if not feature_columns:
            raise ConfigError(f"{where} has no numeric column besides the labels; set data.feature_columns or data.text_column")
    for name in feature_columns:
        column = _column(train, name, "feature_columns", where)
        if not np.issubdtype(column.dtype, np.number):
            raise ConfigError(f"data.feature_columns: column {name!r} of {where} is not numeric ({column.dtype})")
    x_train = train[feature_columns].to_numpy(np.float32)
    mean, std = x_train.mean(0), x_train.std(0)
    std[std == 0] = 1.0
    x_test = test[feature_columns].to_numpy(np.float32) if len(test) else x_train[:0]
    return (x_train - mean) / std, (x_test - mean) / std


@DATASETS.register(
    "table",
    params={"labels": Param(choices=("noisy", "clean")), "max_features": Param(low=1), "test_fraction": TEST_FRACTION},
)
def load(
    cfg: DataConfig,
    label_column: str = "label",
    clean_label_column: str | None = None,
    text_column: str | None = None,
    feature_columns: list[str] | None = None,
    test: str | None = None,
    labels: str = "noisy",
    max_features: int = 2000,
    test_fraction: float = 0.25,
) -> Dataset:
    """The table at `data.root` as a noisy-labelled training set, with the clean test set described above."""
    where = repr(str(cfg.root))
    frame = read_table(cfg.root, "data.root")
    noisy = _column(frame, label_column, "label_column", where)
    clean = None if clean_label_column is None else _column(frame, clean_label_column, "clean_label_column", where)
    if test is not None:
        test_frame = read_table(test, "data.test")
        test_label = clean_label_column if clean_label_column in test_frame.columns else label_column
        test_y = _column(test_frame, test_label, "label_column", repr(test))
        train_frame = frame
    elif clean is not None:  # hold out clean rows as the test set
        order = np.random.default_rng(SPLIT_SEED).permutation(len(frame))
        n_test = round(test_fraction * len(frame))
        test_frame, train_frame = frame.iloc[np.sort(order[:n_test])], frame.iloc[np.sort(order[n_test:])]
        test_y = test_frame[clean_label_column]
    else:  # no clean label anywhere: no test set
        test_frame, train_frame = frame.iloc[:0], frame
        test_y = noisy.iloc[:0]
    taken = {label_column, *(c for c in (clean_label_column, text_column) if c is not None)}
    x_train, x_test = _features(train_frame, test_frame, text_column, feature_columns, taken, max_features, where)

    # Classes: every label value seen, sorted (numbers as numbers, names as text).
    values: list[Any] = sorted({*noisy.tolist(), *([] if clean is None else clean.tolist()), *test_y.tolist()},
                               key=lambda v: (isinstance(v, str), v))
    if len(values) < 2:
        raise ConfigError(f"data.label_column = {label_column!r}: {where} has {len(values)} distinct label(s); 2+ needed")
    index = {v: i for i, v in enumerate(values)}
    encode = lambda series: np.asarray([index[v] for v in series.tolist()], dtype=np.int64)
    return Dataset(
        name=cfg.name,
        train_inputs=torch.from_numpy(x_train),
        train_labels=encode(train_frame[label_column]),
        test_inputs=torch.from_numpy(x_test),
        test_labels=encode(test_y),
        num_classes=len(values),
        input_shape=(x_train.shape[1],),
        classes=[str(v) for v in values],
        labels_are_noisy=clean is not None or labels == "noisy",
        train_clean_labels=None if clean is None else encode(train_frame[clean_label_column]),
    )
