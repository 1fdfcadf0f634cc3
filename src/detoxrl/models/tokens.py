"""Response masks from token ids: where each generated response ends (its first EOS).

Every response is a row of a right-padded ``[B, T]`` grid of token ids; its mask is 1.0 up to and
including the first EOS and 0.0 after it. Generation (:mod:`detoxrl.models.generation`) and the PPO
loop (:mod:`detoxrl.rl`) both use these.
"""

from __future__ import annotations

import torch


def first_true_indices(bools: torch.Tensor, dtype: torch.dtype = torch.long) -> torch.Tensor:
    """Index of the first True in each row of a ``[B, T]`` bool tensor; ``T`` where a row has none."""
    t = bools.shape[-1]
    positions = torch.arange(t, device=bools.device, dtype=dtype)
    candidates = torch.where(bools.bool(), positions, torch.full_like(positions, t))
    return candidates.min(dim=-1).values


def response_mask_from_eos(response_ids: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """Float ``[B, T]`` mask: 1 up to and including the first EOS, 0 after it (all 1 without EOS)."""
    first = first_true_indices(response_ids == eos_token_id)
    positions = torch.arange(response_ids.shape[1], device=response_ids.device)
    return (positions.unsqueeze(0) <= first.unsqueeze(1)).float()


def truncate_after_eos(response_ids: torch.Tensor, eos_token_id: int, pad_token_id: int
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Replace every token after the first EOS by ``pad_token_id``.

    Returns ``(ids, mask, has_eos)``; ``mask`` as in :func:`response_mask_from_eos`.
    """
    mask = response_mask_from_eos(response_ids, eos_token_id)
    ids = response_ids.masked_fill(mask == 0, pad_token_id)
    has_eos = (response_ids == eos_token_id).any(dim=1)
    return ids, mask, has_eos
