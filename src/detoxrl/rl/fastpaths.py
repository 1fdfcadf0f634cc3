"""CPU fast paths of the PPO trainer, each the same computation as the plain one it replaces.

Every helper here is checked against the plain computation in ``tests/test_perf_equivalence.py`` (same
numbers within float tolerance, most of them bit for bit); ``benchmarks/README.md`` has what each saves.

- :func:`store_linear_weights_bf16`: the frozen reference's linear weights kept in bfloat16 under bf16
  autocast (bit-identical, half the memory, no per-call casts);
- :func:`fused_adam_supported`: whether AdamW can use torch's fused kernel (one call for all weights);
- :func:`clip_grad_norm`: gradient clipping that skips its multiply by 1 below the limit;
- :func:`pad_to_multiple`: widths bucketed to multiples of ``ppo.length_multiple``, so oneDNN does not
  build and keep new kernels for every new shape in bf16 runs.
"""

from __future__ import annotations

import torch
from accelerate.utils import DistributedType

from detoxrl.utils import round_up

PLAIN_DISTRIBUTED = (DistributedType.NO, DistributedType.MULTI_CPU, DistributedType.MULTI_GPU)
"""Set-ups whose gradients live on the module's own parameters (no sharding or wrapping optimiser)."""


def store_linear_weights_bf16(model: torch.nn.Module) -> int:
    """Keep a frozen model's ``nn.Linear`` weights in bfloat16; returns how many were converted.

    Under bf16 autocast every linear layer rounds its float32 weight to bfloat16 at each call; storing
    the rounded weight gives bit-identical outputs, half the memory and no per-call cast. Embeddings,
    norms and any linear layer that shares its weight with an embedding (a tied LM head) stay float32,
    because autocast does not round those. Only for models that never train (the reference).
    """
    embedding_weights = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    n = 0
    for m in model.modules():
        if isinstance(m, torch.nn.Linear) and id(m.weight) not in embedding_weights:
            m.weight.data = m.weight.data.to(torch.bfloat16)
            n += 1
    return n


def fused_adam_supported(params: list[torch.Tensor]) -> bool:
    """Whether AdamW's fused kernel takes every parameter (float dtypes on the CPU or CUDA).

    The fused kernel updates all parameters in one call instead of the per-tensor loop AdamW picks by
    default on the CPU; same update rule, float32 rounding aside.
    """
    ok_dtypes = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
    return bool(params) and all(p.device.type in ("cpu", "cuda") and p.dtype in ok_dtypes for p in params)


def clip_grad_norm(params: list[torch.Tensor], max_norm: float, accelerator,
                   wrapped_params=None) -> torch.Tensor | None:
    """Clip the gradients' total norm to ``max_norm``; return the norm before clipping.

    ``params`` are the tensors the optimiser updates; ``wrapped_params`` (default ``params``) what
    accelerate's own path is given (the prepared model's parameters, for set-ups that shard them).

    The same as ``accelerator.clip_grad_norm_``, which multiplies every gradient by
    ``min(max_norm / (norm + 1e-6), 1)`` even when that factor is 1: here the multiply runs only when
    it changes something (same coefficient, computed the same way, so the result is bit-identical).
    Sharded or scaled set-ups (FSDP, DeepSpeed, XLA, an fp16 grad scaler) and torch < 2.6 keep
    accelerate's own path.
    """
    if (accelerator.distributed_type not in PLAIN_DISTRIBUTED or accelerator.scaler is not None
            or not hasattr(torch.nn.utils, "clip_grads_with_norm_")):  # torch < 2.6
        return accelerator.clip_grad_norm_(params if wrapped_params is None else wrapped_params, max_norm)
    params = [p for p in params if p.grad is not None]
    if not params:
        return None
    total = torch.nn.utils.get_total_norm([p.grad for p in params])
    if bool(max_norm / (total + 1e-6) < 1.0):
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, total)
    return total


def pad_to_multiple(x: torch.Tensor, multiple: int, value: float) -> torch.Tensor:
    """``x`` with ``value`` appended along its last dimension up to a multiple of ``multiple`` columns."""
    extra = round_up(x.shape[-1], multiple) - x.shape[-1]
    return x if extra == 0 else torch.nn.functional.pad(x, (0, extra), value=value)
