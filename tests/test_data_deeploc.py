"""DeepLoc on the real 400-protein sample: parsing, tasks, split, tokenizer, training, from_pretrained."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from proselflc import data, models
from proselflc.config import DataConfig, build_run_config, load_run_config
from proselflc.data.deeploc import LOC_CLASSES, RESIDUE_VOCAB, residue_tokenizer, spaced_residues
from proselflc.models.protein import ProteinClassifier
from proselflc.training import Engine

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SAMPLE = Path(__file__).resolve().parent / "data" / "deeploc_sample.csv"
TINY_BERT = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}


def deeploc(**kw) -> DataConfig:
    return DataConfig(name="deeploc", root=SAMPLE, max_length=kw.pop("max_length", 64), **kw)


def test_loc_task_has_ten_classes_and_a_fixed_stratified_test_split():
    ds = data.load(deeploc(task="loc"))
    raw = pd.read_csv(SAMPLE)
    assert ds.num_classes == 10 and ds.classes == list(LOC_CLASSES)
    assert len(ds) + len(ds.test_labels) == len(raw) == 400 and len(ds.test_labels) == 100
    assert ds.train_inputs.dtype == torch.int64 and ds.train_inputs.shape == (300, 64)
    assert ds.input_shape == (64,) and ds.model_kwargs == {"vocab_size": 30, "pad_token_id": 0}
    train_share = np.bincount(ds.train_labels, minlength=10) / len(ds)
    test_share = np.bincount(ds.test_labels, minlength=10) / len(ds.test_labels)
    assert np.abs(train_share - test_share).max() < 0.03, "stratified: class shares match across the split"
    again = data.load(deeploc(task="loc"))
    assert torch.equal(again.test_inputs, ds.test_inputs) and np.array_equal(
        again.test_labels, ds.test_labels
    )
    counts = raw[" loc"].value_counts()
    assert (np.bincount(np.concatenate([ds.train_labels, ds.test_labels]), minlength=10)
            == [counts[c] for c in LOC_CLASSES]).all()  # fmt: skip


def test_membrane_task_drops_unknown_rows():
    ds = data.load(deeploc(task="membrane"))
    raw = pd.read_csv(SAMPLE, skipinitialspace=True)
    known = raw[raw["membrane"].str.strip() != "U"]
    assert ds.num_classes == 2 and ds.classes == ["M", "S"]
    assert len(ds) + len(ds.test_labels) == len(known) == 235
    all_labels = np.concatenate([ds.train_labels, ds.test_labels])
    assert all_labels.sum() == (known["membrane"].str.strip() == "S").sum()


def test_tokens_are_single_residues_with_cls_sep_and_padding():
    ds = data.load(deeploc(task="loc", max_length=600))
    vocab = {token: i for i, token in enumerate(RESIDUE_VOCAB)}
    assert (ds.train_inputs != vocab["[UNK]"]).all(), "every residue is in the vocabulary"
    assert (ds.train_inputs[:, 0] == vocab["[CLS]"]).all()
    lengths = (ds.train_inputs != vocab["[PAD]"]).sum(1)
    short = int(torch.argmin(lengths))
    assert ds.train_inputs[short, lengths[short] - 1] == vocab["[SEP]"]
    assert (ds.train_inputs[short, lengths[short] :] == vocab["[PAD]"]).all()
    assert spaced_residues("M u Z\nOB KLL") == "M X X X X K L L", "re-spaced, upper case, rare residues as X"


def test_split_column_is_used_when_present(tmp_path):
    rows = pd.DataFrame({
        "input": ["M K L", "A G V", "S T P", "M M M", "K K K"],
        "loc": ["Nucleus", "Cytoplasm", "Nucleus", "Plastid", "Cytoplasm"],
        "membrane": ["S", "M", "S", "U", "M"],
        "set": ["train", "train", "test", "train", "test"],
    })  # fmt: skip
    rows.to_csv(tmp_path / "deeploc_data.csv", index=False)
    ds = data.load(DataConfig(name="deeploc", root=tmp_path, max_length=8))
    assert list(ds.test_labels) == [LOC_CLASSES.index("Nucleus"), LOC_CLASSES.index("Cytoplasm")]
    assert len(ds) == 3


def test_bad_files_and_labels_give_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="data.root.*deeploc_data.csv"):
        data.load(DataConfig(name="deeploc", root=tmp_path))
    pd.DataFrame({"sequence": ["M K"], "loc": ["Nucleus"]}).to_csv(tmp_path / "a.csv", index=False)
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['input', 'membrane'\]"):
        data.load(DataConfig(name="deeploc", root=tmp_path / "a.csv"))
    bad = pd.DataFrame(
        {"input": ["M K"] * 4, "loc": ["Nucleus", "Nucleus", "Nucleus", "Nuclues"], "membrane": "S"}
    )
    bad.to_csv(tmp_path / "b.csv", index=False)
    with pytest.raises(ValueError, match=r"unknown label\(s\) \['Nuclues'\]; allowed: Cell.membrane"):
        data.load(DataConfig(name="deeploc", root=tmp_path / "b.csv"))
    with pytest.raises(ValueError, match="data.tokenizer: cannot load"):
        data.load(deeploc(tokenizer=str(tmp_path / "no-such-tokenizer")))


def test_tiny_transformer_trains_from_scratch_on_the_sample():
    cfg = build_run_config({
        "name": "deeploc-membrane",
        "data": {"name": "deeploc", "root": str(SAMPLE), "task": "membrane", "max_length": 64},
        "noise": {"kind": "symmetric", "rate": 0.2},
        "model": {"name": "protein_transformer", **TINY_BERT},
        "loss": {"name": "proselflc", "exp_base": 8, "transit_time_ratio": 0.3},
        "optim": {"lr": 0.01, "weight_decay": 0.0},
        "train": {"epochs": 2, "batch_size": 32, "seed": 0, "progress": False, "threads": 1, "device": "cpu"},
    })  # fmt: skip
    engine = Engine(cfg)
    assert isinstance(engine.model, ProteinClassifier) and engine.model.bert.config.vocab_size == 30
    history = engine.run()
    last = history[-1]
    assert len(history) == 2 and not last["diverged"] and np.isfinite(last["train_loss"])
    assert 0.0 <= last["test_accuracy"] <= 1.0 and 0.0 <= last["noisy_fit"] <= 1.0


def test_saved_model_directory_loads_through_from_pretrained(tmp_path):
    ds = data.load(deeploc(task="loc"))
    torch.manual_seed(0)
    model = models.build(
        "protein_transformer", ds.num_classes, ds.input_shape, **ds.model_kwargs, **TINY_BERT
    )
    model.eval()
    model.save_pretrained(tmp_path / "model")
    residue_tokenizer().save_pretrained(tmp_path / "model")

    reloaded_ds = data.load(deeploc(task="loc", tokenizer=str(tmp_path / "model")))
    assert torch.equal(reloaded_ds.train_inputs, ds.train_inputs), "the saved tokenizer encodes identically"
    same_head = models.build("protein_transformer", 10, (64,), pretrained=str(tmp_path / "model")).eval()
    with torch.no_grad():
        torch.testing.assert_close(same_head(ds.test_inputs[:4]), model(ds.test_inputs[:4]))
    new_head = models.build("protein_transformer", 2, (64,), pretrained=str(tmp_path / "model"))
    assert new_head.bert.classifier.out_features == 2
    encoder = {k: v for k, v in model.bert.state_dict().items() if not k.startswith("classifier")}
    for key, value in encoder.items():
        assert torch.equal(new_head.bert.state_dict()[key], value), key
    with pytest.raises(ValueError, match="data.max_length: 128 is longer than"):
        models.build("protein_transformer", 2, (128,), pretrained=str(tmp_path / "model"))
    with pytest.raises(ValueError, match="model.pretrained: cannot load"):
        models.build("protein_transformer", 2, (64,), pretrained=str(tmp_path / "missing"))


@pytest.mark.parametrize("task", ["membrane", "loc"])
def test_deeploc_run_configs_build_offline_from_scratch(task):
    overrides = [f"data.root={SAMPLE}", "model.pretrained=null", "data.tokenizer=null", "train.device=cpu"]
    cfg = load_run_config(CONFIGS / f"deeploc_{task}.yaml", overrides)
    assert cfg.data.task == task and cfg.loss.name == "proselflc"
    assert (
        load_run_config(CONFIGS / f"deeploc_{task}.yaml").model.kwargs["pretrained"]
        == "Rostlab/prot_bert_bfd"
    )
    engine = Engine(cfg)
    assert engine.num_classes == {"membrane": 2, "loc": 10}[task]
    assert (
        isinstance(engine.model, ProteinClassifier)
        and engine.model.bert.config.max_position_embeddings == 512
    )


def test_deeploc_s_options_are_registry_parameters_checked_before_loading():
    from proselflc.errors import ConfigError

    assert data.load(deeploc(max_length=32.0, test_fraction=0.5)).input_shape == (32,)  # a YAML 32.0 is 32
    for options, refusal in (
        ({"max_length": 4}, "data.max_length = 4 (dataset 'deeploc') is outside the allowed range [8, inf)"),
        ({"task": "nucleus"}, "data.task = 'nucleus' (dataset 'deeploc') is not a valid choice; valid: loc, membrane"),
        ({"test_fraction": 1.0}, "data.test_fraction = 1.0 (dataset 'deeploc') is outside the allowed range (0, 1)"),
        ({"image_size": 64}, "data.image_size: dataset 'deeploc' has no option 'image_size'"),
    ):
        with pytest.raises(ConfigError, match=refusal.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
            build_run_config({"data": {"name": "deeploc", "root": str(SAMPLE), **options}})
    with pytest.raises(ConfigError, match="data.tokenizer = 5: expected a tokenizer name or path"):
        data.load(deeploc(tokenizer=5))
