"""Protein sequence classifier: transformers' BERT, from a small config or from a pretrained checkpoint.

transformers is imported when a model is built, not with this module (the registry imports every
model module to list the names).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from proselflc.models.base import MODELS
from proselflc.models.small import AT_LEAST_ONE
from proselflc.registry import Param

if TYPE_CHECKING:
    from transformers import BertForSequenceClassification


class ProteinClassifier(nn.Module):
    """`forward(input_ids) -> logits`, with the attention mask derived from the pad id.

    The Engine hands every model a single tensor; this wrapper turns a padded token-id batch into
    the (input_ids, attention_mask) call BERT expects.
    """

    def __init__(self, bert: BertForSequenceClassification, pad_token_id: int) -> None:
        super().__init__()
        self.bert = bert
        self.pad_token_id = pad_token_id

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        mask = (input_ids != self.pad_token_id).long()
        return self.bert(input_ids=input_ids, attention_mask=mask).logits

    def save_pretrained(self, path: str | Path) -> None:
        """Write a transformers model directory that `protein_transformer(pretrained=path)` loads back."""
        self.bert.save_pretrained(path)


@MODELS.register("protein_transformer", params={
    **{key: AT_LEAST_ONE for key in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                                     "intermediate_size")},
    "pad_token_id": Param(low=0), "dropout": Param(low=0.0, high=1.0, high_open=True),
})
def protein_transformer(
    num_classes: int,
    input_shape: tuple[int, ...] = (512,),
    vocab_size: int = 30,
    pad_token_id: int = 0,
    pretrained: str | None = None,
    pretrained_layers: int | None = None,
    hidden_size: int = 128,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    intermediate_size: int = 256,
    max_position_embeddings: int | None = None,
    dropout: float = 0.1,
) -> nn.Module:
    """A BERT sequence classifier over token ids of length `input_shape[0]`.

    With `pretrained` (a local model directory, or a hub name such as Rostlab/prot_bert_bfd for users
    with internet) the encoder comes from `from_pretrained` and only the classification head is new;
    the size arguments then come from the checkpoint, except `pretrained_layers`, which keeps only the first
    N encoder layers (the ProSelfLC code fine-tunes ProtBert-BFD cut to 6 of its 30). Otherwise a BERT is built from a small config
    for training from scratch; `vocab_size` and `pad_token_id` come from the dataset's tokenizer.
    """
    seq_len = input_shape[0] if input_shape else 512
    if pretrained_layers is not None and (pretrained is None or pretrained_layers < 1):
        raise ValueError(
            f"model.pretrained_layers: {pretrained_layers!r} needs model.pretrained and must be >= 1 (the encoder "
            "layers kept from the checkpoint)"
        )
    if pretrained is not None:
        bert = _from_pretrained(pretrained, num_classes, pretrained_layers)
        if bert.config.vocab_size < vocab_size:
            raise ValueError(
                f"model.pretrained: {pretrained!r} has a vocabulary of {bert.config.vocab_size} tokens "
                f"but the tokenizer produces {vocab_size}; use the checkpoint's tokenizer "
                f"(data.tokenizer: {pretrained!r})"
            )
        if bert.config.max_position_embeddings < seq_len:
            raise ValueError(
                f"data.max_length: {seq_len} is longer than {pretrained!r} supports "
                f"({bert.config.max_position_embeddings} positions)"
            )
        return ProteinClassifier(bert, pad_token_id)
    if hidden_size % num_attention_heads:
        raise ValueError(
            f"model.hidden_size: {hidden_size} must be divisible by "
            f"model.num_attention_heads ({num_attention_heads})"
        )
    positions = max_position_embeddings if max_position_embeddings is not None else seq_len
    if positions < seq_len:
        raise ValueError(
            f"model.max_position_embeddings: {positions} is shorter than data.max_length ({seq_len})"
        )
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=positions,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        pad_token_id=pad_token_id,
        num_labels=num_classes,
    )
    return ProteinClassifier(BertForSequenceClassification(config), pad_token_id)


def _from_pretrained(name_or_path: str, num_classes: int, layers: int | None = None) -> BertForSequenceClassification:
    """Load quietly: a new (or resized) head is expected, so its 'newly initialised' notice is noise."""
    from transformers import BertConfig, BertForSequenceClassification
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        if layers is not None and layers > (available := BertConfig.from_pretrained(name_or_path).num_hidden_layers):
            raise ValueError(
                f"model.pretrained_layers: {layers} is more than the {available} layers of {name_or_path!r}"
            )
        return BertForSequenceClassification.from_pretrained(
            name_or_path, num_labels=num_classes, ignore_mismatched_sizes=True,
            **({} if layers is None else {"num_hidden_layers": layers}),
        )
    except OSError as exc:
        raise ValueError(
            f"model.pretrained: cannot load {name_or_path!r} (not a model directory, or a hub name "
            f"that needs internet): {str(exc).splitlines()[0]}"
        ) from None
    finally:
        hf_logging.set_verbosity(verbosity)
