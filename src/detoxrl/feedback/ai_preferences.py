"""AI preference pairs (RLAIF, Bai et al. 2022): the self-critique ranks two sampled responses.

For each of ``n_prompts`` prompts (a seeded draw of the split, as ``candidates`` draws them), the policy
samples two distinct responses ``a`` and ``b`` (``labels.generation``, else ``ppo.generation``); a frozen
model's self-critique (the ``self_critique`` judge, :mod:`detoxrl.rewards.self_critique`) gives each
response's violation score, the sum of P(violates) over the principles::

    V(x) = Σ_k v_k(x),       ranks = [1, 2] if V(a) < V(b) − margin,  [2, 1] if V(b) < V(a) − margin,
                             [1, 1] (a tie: no pair for train-rm) otherwise

The rows are the rankings format (``docs/rankings.md``; ``labeller`` is ``self-critique:<critic>``), with
two extra keys that readers ignore: ``violation`` (``[V(a), V(b)]``) and ``p_violates`` (``{principle:
[v_k(a), v_k(b)]}``). ``train-rm`` in rankings mode trains a preference model on the file.

The critic is the first ``self_critique`` judge of ``reward.judges`` (its model and principles), else
the run's SFT model (``labels.policy``, else ``sft.output_dir`` when SFT is on, else ``policy``) with every
principle of ``constitution.path``; ``critic`` and ``principles`` override either.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from detoxrl.config import Config, JudgeSettings
from detoxrl.data.rankings import ranking_row
from detoxrl.errors import DataError
from detoxrl.feedback.candidates import candidate_generation, candidate_policy, distinct_candidates, sample_prompts
from detoxrl.models.loading import load_policy_model
from detoxrl.rewards.build import build_judge
from detoxrl.rewards.self_critique import SelfCritiqueJudge, principle_texts
from detoxrl.utils import console, progress, set_seed, write_json, write_jsonl

OUTPUT_DIR = "{run_dir}/ai_feedback"
RANKINGS = "rankings.jsonl"


def pair_ranks(v_a: float, v_b: float, margin: float = 0.0) -> list[int]:
    """Ranks of ``(a, b)`` from their violation scores: the lower one first; within ``margin``, a tie."""
    if abs(v_a - v_b) <= margin:
        return [1, 1]
    return [1, 2] if v_a < v_b else [2, 1]


def critique_judge(cfg: Config, device: str | torch.device, critic: str | None = None,
                   principles: Sequence[str] | None = None) -> SelfCritiqueJudge:
    """The self-critique that ranks the pairs (module docstring)."""
    base = next((j for j in cfg.reward.judges if j.type == "self_critique"), None)
    if base is None:
        ids = list(principles) if principles else [i for i, _ in principle_texts(None, cfg.constitution.path, cfg)]
        base = JudgeSettings(name="self-critique", type="self_critique", model=critic or candidate_policy(cfg),
                             principles=ids)
    else:
        update = {"model": critic} if critic else {}
        if principles:
            update.update(principles=list(principles), dimensions={})
        base = JudgeSettings.model_validate({**base.model_dump(), **update})
    return build_judge(base, cfg, device)


def violation_scores(judge: SelfCritiqueJudge, texts: list[str], prompts: list[str], bar=None
                     ) -> dict[str, list[float]]:
    """``{principle: [v_k per text]}``, in chunks of the judge's batch size (advancing ``bar``)."""
    out: dict[str, list[float]] = {pid: [] for pid, _ in judge.principles}
    task = bar.add_task("ai-preferences: self-critique", total=len(texts), info="") if bar else None
    for i in range(0, len(texts), judge.batch_size):
        part = judge.p_violates(texts[i: i + judge.batch_size], prompts[i: i + judge.batch_size])
        for pid, v in part.items():
            out[pid] += [float(x) for x in v]
        if bar:
            bar.advance(task, len(texts[i: i + judge.batch_size]))
    return out


def preference_rows(prompts: Sequence[str], pairs: Sequence[Sequence[str]], p_viol: dict[str, list[float]],
                    labeller: str, margin: float = 0.0) -> list[dict]:
    """One rankings row per prompt; ``p_viol[k]`` holds ``v_k`` of ``pairs`` flattened (a, b, a, b, ...)."""
    rows = []
    for i, (prompt, pair) in enumerate(zip(prompts, pairs)):
        per = {pid: [round(v[2 * i], 6), round(v[2 * i + 1], 6)] for pid, v in p_viol.items()}
        va, vb = (sum(v[j] for v in per.values()) for j in (0, 1))
        row = ranking_row(prompt, pair, labeller, ranks=pair_ranks(va, vb, margin), where=f"ai-preferences row {i + 1}")
        row.update(violation=[round(va, 6), round(vb, 6)], p_violates=per)
        rows.append(row)
    return rows


def run_ai_preferences(cfg: Config, *, n_prompts: int = 1000, critic: str | None = None,
                       principles: Sequence[str] | None = None, margin: float = 0.0, out: str | Path | None = None,
                       split: str | None = None, device: str | None = None) -> Path:
    """The ``ai-preferences`` command: sample, self-critique, rank, write (module docstring); returns the
    rankings file (``{run_dir}/ai_feedback/rankings.jsonl`` unless ``out``) and writes ``info.json``."""
    seed = cfg.seed_for(cfg.labels.seed)
    set_seed(seed)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    gen, split = candidate_generation(cfg), split or cfg.data.train_split
    policy_path = candidate_policy(cfg)
    lp = load_policy_model(cfg.policy.model_copy(update={"name_or_path": policy_path}), device=device)
    lp.model.eval()
    prompts = [p.prompt for p in sample_prompts(cfg, lp.tokenizer, split, n_prompts, seed)]
    n_sampled = len(prompts)
    with progress() as bar:
        found = distinct_candidates(lp, prompts, gen, 2, max_resamples=cfg.labels.max_resamples,
                                    batch_size=cfg.labels.batch_size, max_prompt_tokens=cfg.data.max_prompt_tokens,
                                    seed=seed, bar=bar)
        del lp
        keep = [i for i, f in enumerate(found) if len(f) == 2]
        if not keep:
            raise DataError(f"ai-preferences: no prompt of split {split!r} gave two distinct responses")
        prompts, pairs = [prompts[i] for i in keep], [found[i] for i in keep]
        judge = critique_judge(cfg, device, critic, principles)
        flat = [t for pair in pairs for t in pair]
        p_viol = violation_scores(judge, flat, [p for p in prompts for _ in (0, 1)], bar)
    critic_path = str(judge.lp.name_or_path)
    rows = preference_rows(prompts, pairs, p_viol, f"self-critique:{Path(critic_path).name}", margin)
    path = Path(out) if out is not None else cfg.path(OUTPUT_DIR) / RANKINGS
    write_jsonl(path, rows)
    write_json(path.with_name(path.stem + "_info.json"), info(rows, policy_path, critic_path, judge, split,
                                                               seed, margin, n_sampled))
    ties = sum(r["ranks"] == [1, 1] for r in rows)
    console.print(f"ai-preferences: {len(rows)} pairs ({ties} ties, which train no pair) → {path}")
    return path


def info(rows: list[dict], policy: str, critic: str, judge: SelfCritiqueJudge, split: str, seed: int,
         margin: float, n_sampled: int) -> dict:
    """What the file holds: the models, the principles, counts and the mean violation of each side."""
    ranked = [r for r in rows if r["ranks"] != [1, 1]]
    chosen = [r["violation"][r["ranks"].index(1)] for r in ranked]
    rejected = [r["violation"][r["ranks"].index(2)] for r in ranked]
    return {"policy": policy, "critic": critic, "principles": [p for p, _ in judge.principles], "split": split,
            "seed": seed, "margin": margin, "n_prompts": n_sampled, "n_rows": len(rows),
            "n_ties": len(rows) - len(ranked), "n_short": n_sampled - len(rows),
            "mean_violation_chosen": _mean(chosen), "mean_violation_rejected": _mean(rejected)}


def _mean(xs: list[float]) -> float | None:
    return round(sum(xs) / len(xs), 6) if xs else None
