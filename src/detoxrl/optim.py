"""Optimiser helpers shared by the training stages (SFT and PPO).

- :class:`MasterWeights`: float32 master copies for parameters stored in bfloat16 or float16, so that
  ``policy.dtype: bfloat16`` trains without losing small updates to rounding.
- :func:`allocate_adam_state`: Adam(W)'s state created before the first step (a lower peak RSS,
  bit-identical updates).
"""

from __future__ import annotations

import torch


def allocate_adam_state(optimizer: torch.optim.Optimizer) -> bool:
    """Create Adam(W)'s state now instead of at the first ``step()``; returns whether it did.

    torch allocates the moment buffers lazily, in the middle of the first minibatch update, so the first
    update's activations and gradients and two parameter-sized buffers per weight all sit in the heap at
    once and the process keeps that high-water mark; allocated before any rollout, they stay at the
    bottom of the heap. The state is what torch's first step creates (a zero step count, on the
    parameter's device for the fused and capturable kernels, and zero moments), so every update is
    bit-identical (tests/test_perf_equivalence.py). Other optimisers keep the lazy path.
    """
    opt = getattr(optimizer, "optimizer", optimizer)  # accelerate's wrapper
    if not isinstance(opt, torch.optim.Adam):  # AdamW is an Adam in torch >= 2.4
        return False
    for group in opt.param_groups:
        on_device = bool(group.get("fused") or group.get("capturable"))
        step_dtype = torch.float64 if torch.get_default_dtype() == torch.float64 and not group.get("fused") \
            else torch.float32
        for p in group["params"]:
            if opt.state.get(p):
                continue
            state = {"step": torch.zeros((), dtype=step_dtype, device=p.device if on_device else "cpu"),
                     "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                     "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
            if group.get("amsgrad"):
                state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            opt.state[p] = state
    return True


class MasterWeights:
    """Float32 master copies of the trainable parameters stored in bfloat16 or float16.

    AdamW applied to bfloat16 weights rounds every updated weight to 8 significant bits, so a step
    smaller than half the gap to the neighbouring bfloat16 value (2^-9 to 2^-8 of the weight's
    magnitude) is lost; at PPO's learning rates most steps are, and the policy barely moves. Here the
    optimiser updates float32 masters instead: after backward :meth:`grads_to_masters` hands each
    low-precision gradient to its master as float32, and after the optimiser step
    :meth:`masters_to_model` rounds the masters back into the model's weights. Float32 parameters (a
    value head, LoRA adapters that peft keeps in float32) are their own masters.
    """

    LOW = (torch.bfloat16, torch.float16)

    def __init__(self, params: list[torch.Tensor]):
        self.pairs: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.params: list[torch.Tensor] = []  # what the optimiser updates, in the model's order
        for p in params:
            if p.dtype in self.LOW:
                m = p.detach().to(torch.float32).requires_grad_(True)
                self.pairs.append((p, m))
                p = m
            self.params.append(p)

    def __bool__(self) -> bool:
        return bool(self.pairs)

    @torch.no_grad()
    def grads_to_masters(self) -> None:
        for p, m in self.pairs:
            m.grad = None if p.grad is None else p.grad.to(torch.float32)
            p.grad = None

    @torch.no_grad()
    def masters_to_model(self) -> None:
        for p, m in self.pairs:
            p.copy_(m)
