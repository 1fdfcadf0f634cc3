"""``constitution``: supervised Constitutional AI (SL-CAI) between SFT and PPO.

The SFT policy (``policy.name_or_path``) samples one response (``ppo.generation``, seeded) to each of
``constitution.sl.n_prompts`` training prompts, critiques each against each principle, revises the
violating ones and keeps a revision only when its own critique passes
(:mod:`detoxrl.constitution.sl_cai`); it is then fine-tuned on the kept revisions with the SFT
training loop (``constitution.sl``'s epochs, batch size and learning rate; the rest as ``sft``).
``detoxrl run`` runs it when ``constitution.enabled`` and ``constitution.sl.enabled``; PPO then starts
from its model (:func:`start_model`), and the evaluation still compares with ``policy.name_or_path``.

Written into ``constitution.sl.output_dir`` (all at once, or nothing): the model, ``sl_pairs.jsonl``
(exactly the pairs fine-tuning consumed), ``sl_samples.jsonl`` (every response with its P(yes) per
principle, its revision, the revision's P(yes) and whether it was kept), ``sl_metrics.json`` (violations
before and after revision, shares accepted, the fine-tuning's losses) and ``sl_figures.png``.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import torch

from detoxrl.config import Config
from detoxrl.constitution.critic import eval_mode
from detoxrl.constitution.engine import ConstitutionEngine
from detoxrl.constitution.principles import Principle, load_constitution
from detoxrl.constitution.prompts import REQUEST_EXTRA_TOKENS, SelfCritic
from detoxrl.constitution.sl_cai import SLCAI, policy_reviser, rule_reviser, sl_metrics, training_pairs
from detoxrl.data.loaders import load_examples
from detoxrl.data.prompts import build_prompts
from detoxrl.errors import ConfigError, TrainingError
from detoxrl.evaluation.report_plots import plot_sl_cai
from detoxrl.models.generation import generate_responses
from detoxrl.models.policy import LoadedPolicy, length_multiple, load_policy_model, save_policy
from detoxrl.models.precision import resolve_dtype
from detoxrl.stages.device import stage_device
from detoxrl.stages.sft import Pair, encode, evaluate_loss, fit
from detoxrl.utils import atomic_dir, console, progress, set_seed, write_json, write_jsonl


def enabled(cfg: Config) -> bool:
    return cfg.constitution.enabled and cfg.constitution.sl.enabled


def output(cfg: Config) -> Path:
    """The file whose presence means the stage is done."""
    return cfg.path(cfg.constitution.sl.output_dir) / "config.json"


def start_model(cfg: Config) -> str:
    """The model PPO starts from: the SL-CAI model when the stage is enabled, else ``policy.name_or_path``."""
    return str(cfg.path(cfg.constitution.sl.output_dir)) if enabled(cfg) else cfg.resolve(cfg.policy.name_or_path)


def principles_of(cfg: Config) -> list[Principle]:
    const = load_constitution(cfg.constitution.path, cfg)
    ids = cfg.constitution.sl.principles
    if ids is None:
        return list(const.principles)
    unknown = [i for i in ids if i not in const.ids]
    if unknown:
        raise ConfigError(f"constitution.sl.principles: {unknown} are not principles of {const.source} "
                          f"(it has {const.ids})")
    return [const.get(i) for i in ids]


def sample_prompts(cfg: Config, tokenizer, n: int, seed: int) -> list:
    """``n`` training prompts (all when there are fewer), drawn with ``seed``, in a fixed order."""
    prompts, _ = build_prompts(load_examples(cfg, cfg.data.train_split).examples, tokenizer, cfg.data)
    if not prompts:
        raise TrainingError("constitution: no training prompts left after filtering")
    idx = sorted(random.Random(f"{seed}:sl-cai").sample(range(len(prompts)), min(n, len(prompts))))
    return [prompts[i] for i in idx]


def sample_responses(cfg: Config, lp: LoadedPolicy, prompts: list[str], seed: int, max_new_tokens: int) -> list[str]:
    bs = cfg.constitution.sl.batch_size
    out: list[str] = []
    with eval_mode(lp.model), progress() as bar:
        task = bar.add_task("sl-cai: responses", total=len(prompts), info="")
        for b, i in enumerate(range(0, len(prompts), bs)):
            g = generate_responses(lp, prompts[i: i + bs], cfg.ppo.generation, max_prompt_tokens=cfg.data.max_prompt_tokens,
                                   seed=seed * 1_000_003 + b, max_new_tokens=max_new_tokens)
            out += g.texts
            bar.update(task, advance=len(g.texts))
    return out


def build_reviser(cfg: Config, lp: LoadedPolicy, principles: list[Principle], device, max_new_tokens: int):
    sl = cfg.constitution.sl
    if sl.revision == "rewrite":
        return rule_reviser(ConstitutionEngine.from_config(cfg, device, revision="rewrite", policy=lp).checker)
    return policy_reviser(lp, principles, cfg.constitution, cfg.ppo.generation,
                          max_prompt_tokens=cfg.data.max_prompt_tokens + REQUEST_EXTRA_TOKENS,
                          max_new_tokens=max_new_tokens, batch_size=sl.batch_size)


def fine_tune(cfg: Config, lp: LoadedPolicy, pairs: list[dict], seed: int, device) -> dict:
    """Fine-tune ``lp`` in place on ``pairs`` (``prompt`` → ``target``) with the SFT loop; returns figures."""
    sl = cfg.constitution.sl
    settings = cfg.sft.model_copy(update={"epochs": sl.epochs, "batch_size": sl.train_batch_size,
                                          "learning_rate": sl.learning_rate})
    items = encode(lp, [Pair(p["prompt"], p["target"]) for p in pairs], cfg.data.max_prompt_tokens,
                   cfg.sft.max_target_tokens)
    multiple = length_multiple(cfg.sft.length_multiple, lp.model, autocast=False)
    before = evaluate_loss(lp, items, 64, device, multiple)
    steps, history = fit(settings, lp, items, torch.Generator().manual_seed(seed), device, multiple, label="sl-cai")
    return {"pairs": len(items), "steps": steps, "train_loss_before": before,
            "train_loss_after": evaluate_loss(lp, items, 64, device, multiple), "history": history}


def run(cfg: Config, device: str | torch.device | None = None) -> Path:
    """Run SL-CAI (module docstring) and save the fine-tuned policy to ``constitution.sl.output_dir``."""
    sl = cfg.constitution.sl
    device = device or stage_device(cfg)
    seed = cfg.seed_for(sl.seed)
    set_seed(seed)
    principles = principles_of(cfg)
    dtype = resolve_dtype(cfg.policy.dtype, device, key="policy.dtype")
    start = cfg.resolve(cfg.policy.name_or_path)
    lp = load_policy_model(cfg.policy.model_copy(update={"name_or_path": start, "dtype": dtype.choice}),
                           device=device, apply_lora=True)
    t0 = time.perf_counter()
    prompts = sample_prompts(cfg, lp.tokenizer, sl.n_prompts, seed)
    new_tokens = sl.max_new_tokens or cfg.ppo.generation.max_new_tokens
    responses = sample_responses(cfg, lp, [p.prompt for p in prompts], seed, new_tokens)
    critic = SelfCritic(lp, principles, cfg.constitution, threshold=sl.threshold, batch_size=sl.batch_size,
                        max_prompt_tokens=cfg.data.max_prompt_tokens + REQUEST_EXTRA_TOKENS)
    console.print(f"constitution: {len(responses)} responses; self-critique against {[p.id for p in principles]}"
                  f" and {sl.revision} revisions")
    with eval_mode(lp.model):
        samples = SLCAI(critic, build_reviser(cfg, lp, principles, device, new_tokens)).run(
            [p.prompt for p in prompts], [p.text for p in prompts], responses)
    pairs = training_pairs(samples, sl.include_compliant)
    metrics = sl_metrics(samples, [p.id for p in principles])
    metrics["critique_revision_seconds"] = time.perf_counter() - t0
    if pairs:
        metrics["fine_tuning"] = fine_tune(cfg, lp, pairs, seed, device)
    else:
        console.print("[yellow]constitution: no revision was kept; the policy is saved unchanged")
        metrics["fine_tuning"] = None
    _print(metrics)
    out = cfg.path(sl.output_dir)
    with atomic_dir(out) as tmp:
        save_policy(lp.model, lp.tokenizer, tmp, base_name=start,
                    extra={"stage": "constitution", "precision": {dtype.key: dtype.as_dict()}})
        write_jsonl(tmp / "sl_pairs.jsonl", pairs)
        write_jsonl(tmp / "sl_samples.jsonl", [s.as_row() for s in samples])
        write_json(tmp / "sl_metrics.json", metrics)
        png = plot_sl_cai(metrics)
        if png is not None:
            (tmp / "sl_figures.png").write_bytes(png)
    return out


def _print(m: dict) -> None:
    share = lambda v: "–" if v is None else f"{v:.1%}"  # noqa: E731
    console.print(f"constitution: {m['violating']} of {m['responses']} responses violate a principle "
                  f"({share(m['violating_share_before'])} → {share(m['violating_share_after'])} after revision); "
                  f"{m['accepted']} revisions kept ({share(m['accepted_share'])})")
    for pid, p in m["principles"].items():
        console.print(f"  {pid}: violations {share(p['violation_rate_before'])} → {share(p['violation_rate_after'])},"
                      f" revisions kept {share(p['accepted_share'])}")
