"""KL coefficient controllers (and the per-token KL penalties, re-exported from :mod:`detoxrl.rl.core`).

The KL penalty keeps the policy close to the frozen reference: each response token's reward is
``-β·k_t``. ``β`` is either fixed or adapted so that the measured KL tracks a target
(Ziegler et al. 2019, "Fine-Tuning Language Models from Human Preferences", section 2.2).
"""

from __future__ import annotations

from typing import Protocol

import torch

from detoxrl.config import KLSettings
from detoxrl.rl.core import full_kl_from_logits, kl_penalty  # noqa: F401  (re-exported)


class KLController(Protocol):
    value: float

    def update(self, current_kl: float, n_steps: int) -> None: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class FixedKLController:
    """A constant coefficient β; :meth:`update` does nothing."""

    def __init__(self, coef: float) -> None:
        self.value = float(coef)

    def update(self, current_kl: float | torch.Tensor, n_steps: int) -> None:  # noqa: ARG002
        return None

    def state_dict(self) -> dict:
        return {"type": "fixed", "value": self.value}

    def load_state_dict(self, state: dict) -> None:
        self.value = float(state["value"])


class AdaptiveKLController:
    r"""Proportional control of β towards a target KL (Ziegler et al. 2019).

    .. math::
        e &= \operatorname{clip}\bigl(\mathrm{KL}/\mathrm{KL}_{\text{target}} - 1,\ -0.2,\ 0.2\bigr) \\
        \beta &\leftarrow \beta\,\bigl(1 + e \cdot n_{\text{steps}} / H\bigr)

    ``current_kl`` is the mean per-sequence KL of the batch, ``n_steps`` the number of sequences
    (episodes) it came from and ``H`` the horizon.
    """

    def __init__(self, init_coef: float, target: float, horizon: int) -> None:
        if target <= 0 or horizon <= 0:
            raise ValueError("AdaptiveKLController needs target > 0 and horizon > 0")
        self.value = float(init_coef)
        self.target = float(target)
        self.horizon = int(horizon)

    def update(self, current_kl: float | torch.Tensor, n_steps: int) -> None:
        error = min(max(float(current_kl) / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon

    def state_dict(self) -> dict:
        return {"type": "adaptive", "value": self.value, "target": self.target, "horizon": self.horizon}

    def load_state_dict(self, state: dict) -> None:
        """Restore β. ``target`` and ``horizon`` stay as configured (they are saved for the record)."""
        self.value = float(state["value"])


def make_kl_controller(settings: KLSettings) -> FixedKLController | AdaptiveKLController:
    """The controller a :class:`~detoxrl.config.KLSettings` describes."""
    if settings.adaptive:
        return AdaptiveKLController(settings.init_coef, settings.target, settings.horizon)
    return FixedKLController(settings.init_coef)
