"""Target-modification losses: CE(q, p) with a modified target q (or a penalised output p).

Each one is cross entropy against a target built from the label y, the uniform distribution u,
or the model's own (detached) prediction; only ProSelfLC makes the mix depend on time and trust.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from proselflc.losses.base import (
    LOSSES,
    Loss,
    Step,
    entropy,
    normalised_entropy,
    soft_cross_entropy,
    time_ratio,
)
from proselflc.registry import Param

TRUST_MODES = ("global", "entropy", "max_p")
#: Confidence penalty: `entropy` is Pereyra et al.'s (1 - eps) CE - eps H(p) (ProSelfLC-AT's code);
#: `detached` is the ProSelfLC code's CE against the detached target (1 - eps) y - eps p_T.
CP_DEFINITIONS = ("entropy", "detached")
_LOGIT_TEMPERATURE = Param(low=0.0, low_open=True)


def _epsilon(default: float) -> Param:
    return Param(default, low=0.0, high=1.0)


@LOSSES.register("crossentropy")
class CrossEntropy(Loss):
    """Plain cross entropy against the (one-hot or soft) target."""


    def compute(self, logits: Tensor, targets: Tensor, step: Step, total_steps: Step) -> Tensor:
        self.stats = {"mean_epsilon": self._constant(0.0, logits)}
        return soft_cross_entropy(F.log_softmax(logits, dim=1), targets).mean()


class _FixedEpsilon(Loss):
    """A loss with one fixed mixing weight epsilon, logged as `mean_epsilon`."""

    def __init__(self, num_classes: int, epsilon: float) -> None:
        super().__init__(num_classes)
        self.epsilon = float(epsilon)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, epsilon={self.epsilon}"

    def compute(self, logits: Tensor, targets: Tensor, step: Step, total_steps: Step) -> Tensor:
        self.stats = {"mean_epsilon": self._constant(self.epsilon, logits)}
        return self.per_example(F.log_softmax(logits, dim=1), targets).mean()

    def per_example(self, log_p: Tensor, targets: Tensor) -> Tensor:
        raise NotImplementedError


@LOSSES.register("labelsmoothing", params={"epsilon": _epsilon(0.1)})
class LabelSmoothing(_FixedEpsilon):
    """q = (1 - epsilon) y + epsilon u: a fixed pull towards the uniform distribution."""


    def per_example(self, log_p: Tensor, targets: Tensor) -> Tensor:
        q = (1.0 - self.epsilon) * targets + self.epsilon / self.num_classes
        return soft_cross_entropy(log_p, q)


class _SelfTarget(_FixedEpsilon):
    """A fixed-epsilon loss whose target uses the detached, temperature-softened prediction p_T = softmax(z / T)."""

    def __init__(self, num_classes: int, epsilon: float, logit_temperature: float = 1.0) -> None:
        super().__init__(num_classes, epsilon)
        self.logit_temperature = float(logit_temperature)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, logit_temperature={self.logit_temperature}"

    def compute(self, logits: Tensor, targets: Tensor, step: Step, total_steps: Step) -> Tensor:
        self.stats = {"mean_epsilon": self._constant(self.epsilon, logits)}
        p_t = F.log_softmax(logits.detach() / self.logit_temperature, dim=1).exp()  # at T = 1: exactly p
        return self.per_example_self(F.log_softmax(logits, dim=1), targets, p_t).mean()

    def per_example_self(self, log_p: Tensor, targets: Tensor, p_t: Tensor) -> Tensor:
        raise NotImplementedError


@LOSSES.register(
    "confidencepenalty",
    params={
        "epsilon": _epsilon(0.1),
        "definition": Param(choices=CP_DEFINITIONS),
        "logit_temperature": _LOGIT_TEMPERATURE,
    },
)
class ConfidencePenalty(_SelfTarget):
    """Penalises confident outputs; `definition` picks which of the two published forms (see CP_DEFINITIONS).

    `entropy`: (1 - eps) CE(y, p) - eps H(p), gradient (1 - eps)(p - y) + eps p (log p + H(p)) per example.
    `detached`: CE(q, p) with q = (1 - eps) y - eps p_T held constant, gradient (1 - 2 eps) p - (1 - eps) y
    + eps p_T; at T = 1 that is (1 - eps)(p - y), cross entropy scaled by 1 - eps.
    """


    def __init__(
        self, num_classes: int, epsilon: float, definition: str = "entropy", logit_temperature: float = 1.0
    ) -> None:
        if definition == "entropy" and logit_temperature != 1.0:
            raise ValueError(
                f"loss.logit_temperature = {logit_temperature} (loss 'confidencepenalty') only applies with "
                "definition 'detached'; the 'entropy' definition penalises H(p) itself"
            )
        super().__init__(num_classes, epsilon, logit_temperature)
        self.definition = definition

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, definition={self.definition!r}"

    def per_example_self(self, log_p: Tensor, targets: Tensor, p_t: Tensor) -> Tensor:
        if self.definition == "detached":
            return soft_cross_entropy(log_p, (1.0 - self.epsilon) * targets - self.epsilon * p_t)
        return (1.0 - self.epsilon) * soft_cross_entropy(log_p, targets) - self.epsilon * entropy(log_p)


# Reed et al.'s soft bootstrapping keeps beta = 0.95 of the label: epsilon = 0.05.
@LOSSES.register("labelcorrection", params={"epsilon": _epsilon(0.05), "logit_temperature": _LOGIT_TEMPERATURE})
class LabelCorrection(_SelfTarget):
    """Soft bootstrapping (Reed et al.): q = (1 - epsilon) y + epsilon p_T, p_T = softmax(z / T) detached."""


    def per_example_self(self, log_p: Tensor, targets: Tensor, p_t: Tensor) -> Tensor:
        return soft_cross_entropy(log_p, (1.0 - self.epsilon) * targets + self.epsilon * p_t)


@LOSSES.register(
    "proselflc",
    params={
        "exp_base": Param(low=0.0),
        "transit_time_ratio": Param(low=0.0, high=1.0),
        "trust_mode": Param(choices=TRUST_MODES),
        "logit_temperature": _LOGIT_TEMPERATURE,
    },
)
class ProSelfLC(Loss):
    """Progressive self label correction, exactly as docs/components.md (Losses) states it.

    p_T = softmax(z / T) (no gradient), t = step / total_steps, g = sigmoid(B (t - b)),
    e = 1 | 1 - H(p_T)/log C | max p_T, epsilon = g e, q = (1 - epsilon) y + epsilon p_T,
    loss = mean CE(q, p), hence d loss / d z = (p - q) / N.
    """


    def __init__(
        self,
        num_classes: int,
        exp_base: float = 16.0,
        transit_time_ratio: float = 0.5,
        trust_mode: str = "global",
        logit_temperature: float = 1.0,
    ) -> None:
        super().__init__(num_classes)
        self.exp_base = float(exp_base)
        self.transit_time_ratio = float(transit_time_ratio)
        self.trust_mode = trust_mode
        self.logit_temperature = float(logit_temperature)

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, exp_base={self.exp_base}, "
            f"transit_time_ratio={self.transit_time_ratio}, trust_mode={self.trust_mode!r}, "
            f"logit_temperature={self.logit_temperature}"
        )

    def compute(self, logits: Tensor, targets: Tensor, step: Step, total_steps: Step) -> Tensor:
        log_p = F.log_softmax(logits, dim=1)
        with torch.no_grad():
            log_p_t = F.log_softmax(logits / self.logit_temperature, dim=1)
            p_t = log_p_t.exp()
            t = time_ratio(step, total_steps, logits)
            global_trust = torch.sigmoid(self.exp_base * (t - self.transit_time_ratio))
            example_trust = self._example_trust(log_p_t, p_t)
            epsilon = (global_trust * example_trust).unsqueeze(1)
            q = (1.0 - epsilon) * targets + epsilon * p_t
        self.stats = {
            "mean_epsilon": epsilon.mean(),
            "global_trust": global_trust,
            "mean_example_trust": example_trust.mean(),
        }
        return soft_cross_entropy(log_p, q).mean()

    def _example_trust(self, log_p_t: Tensor, p_t: Tensor) -> Tensor:
        if self.trust_mode == "global":
            return torch.ones_like(p_t[:, 0])
        if self.trust_mode == "entropy":
            return 1.0 - normalised_entropy(log_p_t)
        return p_t.max(dim=1).values
