"""The registry's real networks: torchvision CIFAR variants, PreAct ResNet-18, ResNet-50, protein BERT."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision import models as tvm

from proselflc import models
from proselflc.config import ConfigError, ModelConfig
from proselflc.models.protein import ProteinClassifier


@pytest.mark.parametrize("name", ["resnet18", "preactresnet18", "shufflenetv2"])
def test_cifar_networks_keep_32x32_resolution_in_the_stem(name):
    torch.manual_seed(0)
    model = models.build(name, 100, (3, 32, 32)).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 100) and torch.isfinite(out).all()
    stem = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert stem.kernel_size == (3, 3) and stem.stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())


def test_cifar_variants_are_torchvision_classes():
    assert isinstance(models.build("resnet18", 10, (3, 32, 32)), tvm.ResNet)
    shufflenet = models.build("shufflenetv2", 10, (3, 32, 32), width=0.5)
    assert isinstance(shufflenet, tvm.ShuffleNetV2) and shufflenet.conv1[0].out_channels == 24
    resnet18 = models.build("resnet18", 10, (1, 32, 32))
    assert resnet18.conv1.in_channels == 1, "the stem follows input_shape's channels"


def test_preactresnet18_width_and_block_structure():
    model = models.build("preactresnet18", 10, (3, 32, 32), width=8)
    assert model.fc.in_features == 64
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 1 + 16 + 3, (
        "stem, 8 blocks x 2, 3 projections"
    )
    with pytest.raises(ValueError, match="model.width"):
        models.build("preactresnet18", 10, (3, 32, 32), width=0)


def test_resnet50_loads_a_local_state_dict_and_replaces_a_mismatched_head(tmp_path):
    torch.manual_seed(0)
    source = tvm.resnet50(num_classes=1000)
    torch.save(source.state_dict(), tmp_path / "resnet50.pth")
    model = models.build("resnet50", 14, (3, 224, 224), pretrained_path=str(tmp_path / "resnet50.pth"))
    assert isinstance(model, tvm.ResNet) and model.fc.out_features == 14
    assert torch.equal(model.layer4[2].conv3.weight, source.layer4[2].conv3.weight)
    assert torch.equal(model.conv1.weight, source.conv1.weight) and model.maxpool.kernel_size == 3
    same = models.build("resnet50", 1000, (3, 224, 224), pretrained_path=str(tmp_path / "resnet50.pth"))
    assert torch.equal(same.fc.weight, source.fc.weight)
    torch.save(tvm.resnet18().state_dict(), tmp_path / "resnet18.pth")
    with pytest.raises(ValueError, match="not a ResNet-50 state dict .*size mismatch"):
        models.build("resnet50", 14, (3, 224, 224), pretrained_path=str(tmp_path / "resnet18.pth"))
    torch.save({"conv1.weight": source.conv1.weight}, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match="not a ResNet-50 state dict"):
        models.build("resnet50", 14, (3, 224, 224), pretrained_path=str(tmp_path / "partial.pth"))
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="model.pretrained_path: .*is not a loadable state dict"):
        models.build("resnet50", 14, (3, 224, 224), pretrained_path=str(tmp_path / "garbage.pth"))
    with pytest.raises(ValueError, match="model.pretrained_path: .*is not a file"):
        models.build("resnet50", 14, (3, 224, 224), pretrained_path=str(tmp_path / "nope.pth"))


def test_protein_transformer_masks_padding():
    torch.manual_seed(0)
    model = models.build(
        "protein_transformer",
        10,
        (16,),
        vocab_size=30,
        pad_token_id=0,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        dropout=0.0,
    ).eval()
    assert isinstance(model, ProteinClassifier) and model.bert.config.max_position_embeddings == 16
    ids = torch.tensor([[2, 5, 6, 7, 3] + [0] * 11])
    with torch.no_grad():
        logits = model(ids)
        shorter = model(torch.tensor([[2, 5, 6, 7, 3, 0, 0, 0]]))
    assert logits.shape == (1, 10)
    torch.testing.assert_close(logits, shorter, msg="trailing padding does not change the logits")


def test_model_options_are_checked_against_the_builder():
    ModelConfig(name="shufflenetv2", width=0.5)
    with pytest.raises(
        ValueError, match="model.depth: model 'resnet18' has no option 'depth'; allowed: \\(none\\)"
    ):
        ModelConfig(name="resnet18", depth=3)
    with pytest.raises(ValueError, match="allowed: 0.5, 1.0, 1.5, 2.0"):
        models.build("shufflenetv2", 10, (3, 32, 32), width=0.75)
    with pytest.raises(ValueError, match="must be divisible"):
        models.build("protein_transformer", 2, (16,), hidden_size=30, num_attention_heads=4)
    with pytest.raises(ConfigError, match="did you mean 'resnet50'"):
        models.build("resnet5O", 10, (3, 32, 32))
    with pytest.raises(ValueError, match=r"input_shape must be \(channels, height, width\)"):
        models.build("resnet18", 10, (64,))
