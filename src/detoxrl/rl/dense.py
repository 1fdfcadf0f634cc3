"""Dense scores (``ppo.dense_scores``): the reward of every prefix of a response, so that
:func:`detoxrl.rl.core.spread_scores` can credit each token with the change in score it brought."""

from __future__ import annotations

import torch

from detoxrl.models.policy import Generation
from detoxrl.rl.rollout import Reward, Rollout


def prefix_potentials(reward_fn: Reward, tokenizer, ro: Rollout, gen: Generation,
                      below: float | None) -> tuple[torch.Tensor, int]:
    """``([B, T] at ``ro``'s width, rows scored)``: ``reward_fn`` of each response's first ``t + 1`` tokens
    (decoded as the generation decodes), for ``t`` before its last token, on the rows whose raw score is
    below ``below`` (every row when ``None``); NaN elsewhere. One reward call for all the prefixes."""
    out = torch.full(ro.response_ids.shape, float("nan"), dtype=torch.float32)
    lengths = gen.response_mask.sum(1).long().tolist()
    rows = [b for b, n in enumerate(lengths) if n > 1 and (below is None or float(ro.raw_scores[b]) < below)]
    where = [(b, t) for b in rows for t in range(lengths[b] - 1)]
    if where:
        ids = [gen.response_ids[b, : t + 1].tolist() for b, t in where]
        texts = [t.strip() for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]
        totals = reward_fn(texts, [ro.prompts[b] for b, _ in where]).total.detach().float().cpu()
        bs, ts = zip(*where)
        out[list(bs), list(ts)] = totals
    return out.to(ro.response_ids.device), len(rows)
