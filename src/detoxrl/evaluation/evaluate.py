"""The ``eval`` stage: the reference model (BEFORE) against the trained policy (AFTER).

Both models answer the same held-out prompts (the first ``eval.n_prompts`` of ``data.eval_split``
that pass the prompt filters) with the same decoding settings and the same seeds. Every configured
judge — the reward judges the policy was trained against and the ``eval.extra_judges`` it never saw —
scores every response. The result goes to ``eval.json`` (schema in the README, "Evaluation output")
and ``eval_table.csv`` (see :mod:`detoxrl.evaluation.table`) in the run folder.

The pipeline in :func:`run_eval` is: prompts → generate (before, after; ``k`` samples each;
:mod:`~detoxrl.evaluation.generation`) → KL of the policy from the reference on policy samples →
judges (:mod:`~detoxrl.evaluation.judging`) → :func:`~detoxrl.evaluation.summary.summarize` (pure, on
arrays) and :func:`~detoxrl.evaluation.table.build_table_rows` → files → console
(:mod:`~detoxrl.evaluation.printing`).
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from detoxrl.config import Config, GenerationSettings
from detoxrl.data.loaders import load_examples
from detoxrl.data.prompts import build_prompts
from detoxrl.errors import ConfigError, DataError, ModelError
from detoxrl.evaluation.breakdown import eval_tiers
from detoxrl.evaluation.generation import (
    Generated,
    eval_generation,
    generate_all,
    is_plain_sampling,
    kl_generation,
    sampled_kl,
)
from detoxrl.evaluation.judging import EvalJudge, build_eval_judges, judge_info, score_texts
from detoxrl.evaluation.printing import print_examples, print_summary
from detoxrl.evaluation.summary import json_clean, summarize
from detoxrl.evaluation.table import build_table_rows, write_eval_table
from detoxrl.models.loading import LoadedPolicy, load_policy_model
from detoxrl.utils import progress, set_seed, write_json

EVAL_JSON = "eval.json"
EVAL_TABLE = "eval_table.csv"


def load_eval_prompts(cfg: Config, tokenizer, n: int | None = None) -> tuple[list, dict]:
    """The first ``n`` (default ``eval.n_prompts``) prompts of ``data.eval_split`` that pass the prompt
    filters."""
    split = cfg.data.eval_split
    examples = load_examples(cfg, split).examples
    want = cfg.eval.n_prompts if n is None else n
    kept: list = []
    stats: dict[str, int] = {"total": 0, "kept": 0, "too_few_chars": 0, "too_many_chars": 0, "too_short": 0,
                             "too_long": 0, "truncated": 0}
    start = 0
    block = max(want, 256)
    while len(kept) < want and start < len(examples):
        part, st = build_prompts(examples[start : start + block], tokenizer, cfg.data)
        kept.extend(part)
        for k in stats:
            stats[k] += int(st.get(k, 0))
        start += block
    kept = kept[:want]
    if not kept:
        chars = stats["too_few_chars"] + stats["too_many_chars"]
        raise DataError(f"no evaluation prompts: split {split!r} of {cfg.data.source} gave {stats['total']} "
                        f"examples, {stats['too_short']} too short and {stats['too_long']} too long for "
                        f"data.min_prompt_tokens/max_prompt_tokens"
                        + (f", {chars} outside data.min_text_chars/max_text_chars" if chars else ""))
    return kept, stats


def _release_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass
class _Sides:
    """Both models' responses, the KL along the policy's samples, and how long each part took."""

    before: Generated
    after: Generated
    kl: np.ndarray
    generation_s: float
    kl_s: float


def _generate_sides(cfg: Config, ref: LoadedPolicy, after_dir: Path, prompt_texts: list[str],
                    gen: GenerationSettings, k: int, seed: int, device: str, bar) -> _Sides:
    """Generate with the reference, then load the policy and generate with it; the KL to the reference
    is measured along the policy's own responses when they are plain samples, else on fresh ones."""
    bs, mpt, n = cfg.eval.batch_size, cfg.data.max_prompt_tokens, len(prompt_texts)
    t_gen = time.perf_counter()
    task = bar.add_task("eval: generate before", total=n * k, info="")
    before = generate_all(ref, prompt_texts, gen, samples=k, batch_size=bs, max_prompt_tokens=mpt,
                          seed=seed, on_batch=lambda m: bar.advance(task, m))
    policy = load_policy_model(cfg.policy.model_copy(update={"name_or_path": str(after_dir)}), device=device)
    policy.model.eval()
    reuse = is_plain_sampling(gen)
    task = bar.add_task("eval: generate after" + (" (+ KL)" if reuse else ""), total=n * k, info="")
    after = generate_all(policy, prompt_texts, gen, samples=k, batch_size=bs, max_prompt_tokens=mpt,
                         seed=seed, on_batch=lambda m: bar.advance(task, m), kl_ref=ref.model if reuse else None)
    generation_s = time.perf_counter() - t_gen - after.kl_seconds
    if reuse:
        return _Sides(before, after, after.kl, generation_s, after.kl_seconds)
    t_kl = time.perf_counter()
    task = bar.add_task("eval: KL to reference", total=n, info="")
    kl = sampled_kl(policy, ref.model, prompt_texts, gen, batch_size=bs, max_prompt_tokens=mpt,
                    seed=seed, on_batch=lambda m: bar.advance(task, m))
    return _Sides(before, after, kl, generation_s, time.perf_counter() - t_kl)


def _judge_sides(judges: list[EvalJudge], sides: _Sides, prompt_texts: list[str], k: int, bar
                 ) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, dict[str, np.ndarray]]]:
    """Every judge on every response of both sides: ``{judge: {"toxicity", "score"}}`` arrays ``[k, N]``."""
    n = len(prompt_texts)
    flat_prompts = prompt_texts * k
    judged_before: dict[str, dict[str, np.ndarray]] = {}
    judged_after: dict[str, dict[str, np.ndarray]] = {}
    task = bar.add_task("eval: judges", total=2 * n * k * len(judges), info="")
    for ej in judges:
        bar.update(task, info=ej.name)
        for texts, store in ((sides.before.texts, judged_before), (sides.after.texts, judged_after)):
            flat = [t for row in texts for t in row]
            res = score_texts(ej, flat, flat_prompts, on_chunk=lambda m: bar.advance(task, m))
            store[ej.name] = {key: v.reshape(k, n) for key, v in res.items()}
    return judged_before, judged_after


def run_eval(cfg: Config, samples: int | None = None, *, device: str | None = None,
             after_dir: Path | None = None) -> dict:
    """Evaluate BEFORE (``policy.name_or_path``) against AFTER (``after_dir``, default ``ppo.output_dir``);
    write the files.

    Returns the ``eval.json`` content. ``samples`` (default ``eval.samples``) responses are drawn per
    prompt; with more than one, decoding samples and expected maximum toxicity is reported.
    """
    t_start = time.perf_counter()
    k = int(samples or cfg.eval.samples)
    if k < 1:
        raise ConfigError(f"samples must be at least 1, not {k}")
    seed = cfg.seed_for(cfg.eval.seed)
    set_seed(seed)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    before_name = cfg.resolve(cfg.policy.name_or_path)
    after_dir = Path(after_dir) if after_dir is not None else cfg.path(cfg.ppo.output_dir)
    if not (after_dir / "config.json").exists():
        raise ModelError(f"no trained policy at {after_dir} (ppo.output_dir): run `detoxrl ppo` first")
    gen = eval_generation(cfg.eval.generation, k)

    judges = build_eval_judges(cfg, device=device)  # a bad judge setting fails before any generation
    ref = load_policy_model(cfg.policy.model_copy(update={"name_or_path": before_name}), device=device)
    ref.model.eval()
    prompts, prompt_stats = load_eval_prompts(cfg, ref.tokenizer)
    # before any generation: a bad tier value fails here; without a tier column the reward judges tier the prompts
    tiers = eval_tiers(cfg, prompts, [ej.judge for ej in judges if ej.trained_against])
    prompt_texts = [p.prompt for p in prompts]
    with progress() as bar:
        sides = _generate_sides(cfg, ref, after_dir, prompt_texts, gen, k, seed, device, bar)
        del ref  # both models go before the judges load theirs
        _release_memory()
        t_judge = time.perf_counter()
        judged_before, judged_after = _judge_sides(judges, sides, prompt_texts, k, bar)
        judging_s = time.perf_counter() - t_judge

    infos = [judge_info(ej, cfg) for ej in judges]
    primary = infos[0]["name"]
    decoding = {**gen.model_dump(mode="json"),
                "kl_sampling": "the after responses" if is_plain_sampling(gen)
                else kl_generation(gen).model_dump(mode="json")}
    timing = {"generation_s": round(sides.generation_s, 2), "kl_s": round(sides.kl_s, 2),
              "judging_s": round(judging_s, 2)}
    before, after = sides.before, sides.after
    result = summarize(cfg=cfg, judges=infos, primary=primary, prompts=prompts, samples=k, decoding=decoding,
                       seed=seed, before_model=before_name, after_model=str(after_dir),
                       texts_before=before.texts, texts_after=after.texts,
                       lengths_before=before.lengths, lengths_after=after.lengths,
                       judged_before=judged_before, judged_after=judged_after, kl=sides.kl, timing=timing,
                       prompt_stats=prompt_stats, tiers=tiers)
    thresholds = {j["name"]: float(j["threshold"]) for j in infos}
    rows = build_table_rows(prompts, [j["name"] for j in infos], primary, before.texts, after.texts,
                            before.lengths, after.lengths, judged_before, judged_after, thresholds)
    write_eval_table(cfg.run_path / EVAL_TABLE, rows, [j["name"] for j in infos])
    result["timing"]["total_s"] = round(time.perf_counter() - t_start, 2)
    result = json_clean(result)
    write_json(cfg.run_path / EVAL_JSON, result)
    print_summary(result)
    print_examples(rows, cfg.eval.table_examples, primary)
    return result
