"""The model registry: every network registers its builder here, where the builder is defined.

A builder is `fn(num_classes, input_shape, **options) -> nn.Module`; its keyword arguments (with
their defaults) are the `model.*` options a config may set, so a new network is one module in this
package with one `@MODELS.register(name)` builder. Builders import their heavy libraries
(torchvision, transformers) inside the function, so listing or checking models stays cheap.
"""

from __future__ import annotations

from proselflc.registry import Registry

#: Every network, by `model.name`; the modules of this package register into it.
MODELS = Registry("model", "model", positional=("num_classes", "input_shape"), package="proselflc.models")
