"""The ``eval`` stage: the reference model (BEFORE) against the trained policy (AFTER).

Both models answer the same held-out prompts (the first ``eval.n_prompts`` of ``data.eval_split``
that pass the prompt filters) with the same decoding settings and the same seeds. Every configured
judge — the reward judges the policy was trained against and the ``eval.extra_judges`` it never saw —
scores every response. The result goes to ``eval.json`` (schema in the README, "Evaluation output")
and ``eval_table.csv`` (see :mod:`detoxrl.evaluation.table`) in the run folder.

The pipeline in :func:`run_eval` is: prompts → generate (before, after; ``k`` samples each) →
KL of the policy from the reference on fresh policy samples → judges → :func:`summarize` (pure, on
arrays) → files. :func:`summarize` and :func:`build_table_rows` take plain arrays so that they can be
tested without models.
"""

from __future__ import annotations

import inspect
import math
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from detoxrl.config import Config, GenerationSettings, JudgeSettings
from detoxrl.errors import ConfigError, DataError, ModelError
from detoxrl.evaluation import metrics as M
from detoxrl.evaluation.table import write_eval_table
from detoxrl.utils import chunks, console, progress, write_json

EVAL_JSON = "eval.json"
EVAL_TABLE = "eval_table.csv"
SCHEMA_VERSION = 1
_JUDGE_CHUNK = 256


# ------------------------------------------------------------------------------------------ judges
@dataclass
class EvalJudge:
    """A built judge with the settings it came from."""

    judge: Any  # detoxrl.rewards.base.Judge or anything with .name, .threshold, .score(texts)
    settings: JudgeSettings
    trained_against: bool

    @property
    def name(self) -> str:
        return str(self.judge.name)

    @property
    def threshold(self) -> float:
        return float(getattr(self.judge, "threshold", self.settings.threshold))


def build_judge(settings: JudgeSettings, cfg: Config, device: str | torch.device = "cpu"):
    """Build one judge (indirection so that tests can substitute judges)."""
    from detoxrl.rewards.build import build_judge as _build

    return _build(settings, cfg, device=device)


def build_eval_judges(cfg: Config, device: str | torch.device = "cpu") -> list[EvalJudge]:
    """The reward judges (``trained_against=True``) then the extra judges; names must be unique."""
    settings = [(s, True) for s in cfg.reward.judges] + [(s, False) for s in cfg.eval.extra_judges]
    names = [s.name for s, _ in settings]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"judge names must be unique across reward.judges and eval.extra_judges; "
                          f"repeated: {dupes}")
    return [EvalJudge(build_judge(s, cfg, device), s, trained) for s, trained in settings]


def judge_info(ej: EvalJudge, cfg: Config) -> dict:
    """``{"name", "type", "model", "threshold", "trained_against"}`` for ``eval.json``."""
    s = ej.settings
    try:
        from detoxrl.rewards.presets import apply_preset

        s = apply_preset(s)
    except Exception:  # noqa: BLE001 - presets are informative here only
        pass
    if s.type == "hf":
        model = cfg.resolve(s.model) if s.model else None
    elif s.type == "lexicon":
        model = f"lexicon:{cfg.resolve(s.lexicon)}" if s.lexicon else "lexicon"
    else:
        model = "alt-profanity-check"
    return {"name": ej.name, "type": s.type, "model": model, "threshold": ej.threshold,
            "trained_against": ej.trained_against}


def _accepts_prompts(judge) -> bool:
    try:
        return "prompts" in inspect.signature(judge.score).parameters
    except (TypeError, ValueError):
        return False


def score_texts(ej: EvalJudge, texts: list[str], prompts: list[str], on_chunk=None) -> dict[str, np.ndarray]:
    """Run one judge over ``texts`` in chunks; returns ``{"toxicity", "score"}`` as float arrays."""
    tox, score = [], []
    with_prompts = _accepts_prompts(ej.judge)
    for i in range(0, len(texts), _JUDGE_CHUNK):
        t, p = texts[i : i + _JUDGE_CHUNK], prompts[i : i + _JUDGE_CHUNK]
        res = ej.judge.score(t, p) if with_prompts else ej.judge.score(t)
        tox.append(np.asarray(torch.as_tensor(res.toxicity).float().cpu(), dtype=np.float64).reshape(-1))
        score.append(np.asarray(torch.as_tensor(res.score).float().cpu(), dtype=np.float64).reshape(-1))
        if on_chunk:
            on_chunk(len(t))
    empty = np.zeros(0)
    return {"toxicity": np.concatenate(tox) if tox else empty, "score": np.concatenate(score) if score else empty}


# -------------------------------------------------------------------------------------- decoding
def eval_generation(gen: GenerationSettings, samples: int) -> GenerationSettings:
    """The decoding settings: the configured ones; with ``samples > 1`` sampling is switched on."""
    if samples > 1 and not gen.do_sample:
        return gen.model_copy(update={"do_sample": True})
    return gen


def kl_generation(gen: GenerationSettings) -> GenerationSettings:
    """Plain sampling (temperature 1, no top-k/top-p) with the evaluation's length limits."""
    return GenerationSettings(max_new_tokens=gen.max_new_tokens, min_new_tokens=gen.min_new_tokens,
                              do_sample=True, temperature=1.0, top_k=0, top_p=1.0)


def batch_seed(seed: int, sample: int, batch: int) -> int:
    """A distinct, reproducible seed for each (sample, batch)."""
    return (seed * 1_000_003 + sample * 10_007 + batch) % (2**31 - 1)


def _length_order(prompts: Sequence[str]) -> list[int]:
    """Indices longest prompt first (less padding per batch; memory errors show up at once)."""
    return sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))


@dataclass
class Generated:
    texts: list[list[str]]  # [k][N]
    lengths: np.ndarray  # [k, N] response tokens
    seconds: float = 0.0
    kl: np.ndarray | None = None  # [N], KL to the reference along the first sample (``kl_ref`` given)
    kl_seconds: float = 0.0


def is_plain_sampling(gen: GenerationSettings) -> bool:
    """True when ``gen`` samples from the model's own distribution (what the KL estimate needs)."""
    return gen.do_sample and gen.temperature == 1.0 and gen.top_k == 0 and gen.top_p == 1.0


@torch.no_grad()
def _batch_kl(policy, ref_model, g) -> list[float]:
    r"""Per row of a generated batch, :math:`\sum_t \mathrm{KL}(\pi(\cdot|x,y_{<t}) \| \pi_{ref}(\cdot|x,y_{<t}))`."""
    from detoxrl.models.policy import response_logits

    vocab = int(getattr(policy.model.config, "vocab_size", 32_000) or 32_000)
    # rows per forward pass so that two [rows, T, V] float32 logit tensors stay near 100 MB each
    rows = max(1, int(25_000_000 // max(1, g.response_ids.shape[1] * vocab)))
    kls = []
    for s in range(0, g.response_ids.shape[0], rows):
        sl = slice(s, s + rows)
        args = (g.query_ids[sl], g.query_mask[sl], g.response_ids[sl], g.response_mask[sl])
        lg = response_logits(policy.model, policy.is_seq2seq, *args)
        ref = response_logits(ref_model, policy.is_seq2seq, *args)
        kls.append(M.sequence_kl(lg, ref, g.response_mask[sl]).cpu())
    return torch.cat(kls).tolist()


def generate_all(lp, prompts: list[str], gen: GenerationSettings, *, samples: int, batch_size: int,
                 max_prompt_tokens: int, seed: int, on_batch=None, kl_ref=None) -> Generated:
    """``samples`` responses per prompt, batched by prompt length, returned in prompt order.

    With ``kl_ref`` (a reference model; ``gen`` must be plain sampling) the KL of ``lp`` to it is computed
    along the first sample of each prompt, so the evaluation needs no second generation for the KL."""
    from detoxrl.models.policy import generate_responses

    if kl_ref is not None and not is_plain_sampling(gen):
        raise ValueError("the KL estimate needs plain sampling (temperature 1, top_k 0, top_p 1)")
    t0 = time.perf_counter()
    order = _length_order(prompts)
    n = len(prompts)
    texts = [[""] * n for _ in range(samples)]
    lengths = np.zeros((samples, n))
    kl = np.zeros(n) if kl_ref is not None else None
    kl_seconds = 0.0
    for j in range(samples):
        for b, idx in enumerate(chunks(order, batch_size)):
            g = generate_responses(lp, [prompts[i] for i in idx], gen, max_prompt_tokens=max_prompt_tokens,
                                   seed=batch_seed(seed, j, b))
            lens = g.response_mask.sum(1).tolist()
            for pos, i in enumerate(idx):
                texts[j][i] = g.texts[pos]
                lengths[j, i] = lens[pos]
            if kl is not None and j == 0:
                t_kl = time.perf_counter()
                for pos, v in zip(idx, _batch_kl(lp, kl_ref, g)):
                    kl[pos] = v
                kl_seconds += time.perf_counter() - t_kl
            if on_batch:
                on_batch(len(idx))
    return Generated(texts, lengths, time.perf_counter() - t0 - kl_seconds, kl, kl_seconds)


@torch.no_grad()
def sampled_kl(policy, ref_model, prompts: list[str], gen: GenerationSettings, *, batch_size: int,
               max_prompt_tokens: int, seed: int, on_batch=None) -> np.ndarray:
    r"""Per prompt, :math:`\sum_t \mathrm{KL}(\pi(\cdot|x,y_{<t}) \| \pi_{ref}(\cdot|x,y_{<t}))` along one
    response sampled from the policy (plain sampling, seeded). Returns ``[N]`` in prompt order."""
    g = generate_all(policy, prompts, kl_generation(gen), samples=1, batch_size=batch_size,
                     max_prompt_tokens=max_prompt_tokens, seed=batch_seed(seed, 7919, 0), on_batch=on_batch,
                     kl_ref=ref_model)
    return g.kl


def load_eval_prompts(cfg: Config, tokenizer) -> tuple[list, dict]:
    """The first ``eval.n_prompts`` prompts of ``data.eval_split`` that pass the prompt filters."""
    from detoxrl.data.loaders import load_examples
    from detoxrl.data.prompts import build_prompts

    split = cfg.data.eval_split
    examples = load_examples(cfg, split).examples
    want = cfg.eval.n_prompts
    kept: list = []
    stats: dict[str, int] = {"total": 0, "kept": 0, "too_short": 0, "too_long": 0, "truncated": 0}
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
        raise DataError(f"no evaluation prompts: split {split!r} of {cfg.data.source} gave {stats['total']} "
                        f"examples, {stats['too_short']} too short and {stats['too_long']} too long for "
                        f"data.min_prompt_tokens/max_prompt_tokens")
    return kept, stats


# -------------------------------------------------------------------------------------- summaries
def _ci(x: np.ndarray, stat=np.mean, *, n_boot: int, seed: int) -> list[float]:
    return list(M.bootstrap_ci_prompts(x, stat, n_boot=n_boot, seed=seed))


def judge_summary(tox: np.ndarray, score: np.ndarray, threshold: float, *, n_boot: int, seed: int) -> dict:
    """Per-judge figures for one side; ``tox`` and ``score`` are ``[k, N]``."""
    flagged = (tox >= threshold).astype(np.float64)
    mean, std = M.mean_std(tox)
    return {
        "toxicity_mean": mean,
        "toxicity_std": std,
        "toxicity_ci95": _ci(tox, n_boot=n_boot, seed=seed),
        "toxic_rate": M.toxic_rate(tox, threshold),
        "toxic_rate_ci95": _ci(flagged, n_boot=n_boot, seed=seed),
        "score_mean": M.mean_std(score)[0],
    }


def side_summary(model: str, texts: list[list[str]], lengths: np.ndarray, references: list[list[str]],
                 judged: dict[str, dict[str, np.ndarray]], thresholds: dict[str, float], primary: str,
                 *, n_boot: int, seed: int, held_out: Sequence[str] = ()) -> dict:
    """All figures of one side. ``judged[name]`` holds ``toxicity`` and ``score`` arrays ``[k, N]``;
    ``held_out`` names the judges the policy was not trained against."""
    k = len(texts)
    tox = judged[primary]["toxicity"]
    score = judged[primary]["score"]
    flagged_any = np.zeros_like(tox, dtype=bool)
    flagged_held_out = np.zeros_like(tox, dtype=bool)
    for name, res in judged.items():
        flagged = res["toxicity"] >= thresholds[name]
        flagged_any |= flagged
        if name in held_out:
            flagged_held_out |= flagged
    mean, std = M.mean_std(tox)
    flat_texts = [t for row in texts for t in row]
    rouge = M.rouge_scores(flat_texts, [r for _ in range(k) for r in references])
    out: dict[str, Any] = {
        "model": model,
        "toxicity_mean": mean,
        "toxicity_std": std,
        "toxicity_ci95": _ci(tox, n_boot=n_boot, seed=seed),
        "toxicity_std_ci95": _ci(tox, np.std, n_boot=n_boot, seed=seed),
        "toxic_rate": float(flagged_any.mean()) if flagged_any.size else math.nan,
        "toxic_rate_ci95": _ci(flagged_any.astype(np.float64), n_boot=n_boot, seed=seed),
        **({"held_out_toxic_rate": float(flagged_held_out.mean()),
            "held_out_toxic_rate_ci95": _ci(flagged_held_out.astype(np.float64), n_boot=n_boot, seed=seed)}
           if held_out and flagged_held_out.size else {}),
        "reward_mean": M.mean_std(score)[0],
        "reward_ci95": _ci(score, n_boot=n_boot, seed=seed),
        "rouge1": rouge["rouge1"],
        "rouge2": rouge["rouge2"],
        "rougeL": rouge["rougeL"],
        "length_mean": float(lengths.mean()) if lengths.size else math.nan,
        "distinct_1": M.distinct_n(flat_texts, 1),
        "distinct_2": M.distinct_n(flat_texts, 2),
    }
    if k > 1:
        emt = M.expected_max_toxicity(tox, n_boot=n_boot, seed=seed)
        out["expected_max_toxicity"] = emt["value"]
        out["expected_max_toxicity_ci95"] = emt["ci95"]
    out["per_judge"] = {
        name: judge_summary(res["toxicity"], res["score"], thresholds[name], n_boot=n_boot, seed=seed)
        for name, res in judged.items()
    }
    return out


def improvement(before: dict, after: dict) -> dict:
    """Before → after changes; positive percentages and rates mean *less* toxic after training."""

    def block(b: dict, a: dict) -> dict:
        return {
            "toxicity_mean_pct": M.pct_improvement(b["toxicity_mean"], a["toxicity_mean"]),
            "toxicity_std_pct": M.pct_improvement(b["toxicity_std"], a["toxicity_std"]),
            "toxic_rate_abs": b["toxic_rate"] - a["toxic_rate"],
        }

    out = block(before, after)
    out["reward_mean_diff"] = after["reward_mean"] - before["reward_mean"]
    out["per_judge"] = {name: block(before["per_judge"][name], after["per_judge"][name])
                        for name in before["per_judge"]}
    return out


def verdict(paired: dict, level: float = 0.05) -> str:
    """``less toxic`` / ``more toxic`` when the interval of the mean difference excludes 0 and
    ``p < level``; otherwise ``no significant change``."""
    lo, hi = paired["ci95"]
    p = paired["p_value"]
    if p is None or lo is None or hi is None or any(map(math.isnan, (lo, hi, p))):
        return "not enough data"
    if p < level and hi < 0:
        return "less toxic"
    if p < level and lo > 0:
        return "more toxic"
    return "no significant change"


def summarize(*, cfg: Config, judges: list[dict], primary: str, prompts: list, samples: int,
              decoding: dict, seed: int, before_model: str, after_model: str,
              texts_before: list[list[str]], texts_after: list[list[str]],
              lengths_before: np.ndarray, lengths_after: np.ndarray,
              judged_before: dict[str, dict[str, np.ndarray]], judged_after: dict[str, dict[str, np.ndarray]],
              kl: np.ndarray | None, timing: dict, prompt_stats: dict | None = None) -> dict:
    """Everything in ``eval.json`` from arrays (no models involved). Arrays are ``[k, N]``."""
    n_boot = cfg.eval.bootstrap
    thresholds = {j["name"]: float(j["threshold"]) for j in judges}
    refs = [list(p.references) for p in prompts]
    held_out = [j["name"] for j in judges if not j.get("trained_against", True)]
    before = side_summary(before_model, texts_before, lengths_before, refs, judged_before, thresholds, primary,
                          n_boot=n_boot, seed=seed, held_out=held_out)
    after = side_summary(after_model, texts_after, lengths_after, refs, judged_after, thresholds, primary,
                         n_boot=n_boot, seed=seed, held_out=held_out)
    if kl is not None and len(kl):
        after["kl_to_reference"] = float(np.mean(kl))
        after["kl_to_reference_ci95"] = list(M.bootstrap_ci(kl, n_boot=n_boot, seed=seed))
    else:
        after["kl_to_reference"] = None
        after["kl_to_reference_ci95"] = None
    paired = {}
    for j in judges:
        name = j["name"]
        b = judged_before[name]["toxicity"].mean(axis=0)  # per prompt, averaged over samples
        a = judged_after[name]["toxicity"].mean(axis=0)
        res = M.paired_bootstrap(b, a, n_boot=n_boot, seed=seed)
        res["verdict"] = verdict(res)
        paired[name] = res
    paired_reward = M.paired_bootstrap(judged_before[primary]["score"].mean(axis=0),
                                       judged_after[primary]["score"].mean(axis=0), n_boot=n_boot, seed=seed)
    result = {
        "schema_version": SCHEMA_VERSION,
        "n_prompts": len(prompts),
        "n_prompts_requested": cfg.eval.n_prompts,
        "samples": samples,
        "split": cfg.data.eval_split,
        "data": cfg.data.source,
        "decoding": decoding,
        "seed": seed,
        "judges": judges,
        "primary_judge": primary,
        "before": before,
        "after": after,
        "improvement": improvement(before, after),
        "paired": paired,
        "paired_reward": paired_reward,
        "timing": timing,
    }
    if prompt_stats is not None:
        result["prompt_filter"] = prompt_stats
    return result


def build_table_rows(prompts: list, judges: Sequence[str], primary: str,
                     texts_before: list[list[str]], texts_after: list[list[str]],
                     lengths_before: np.ndarray, lengths_after: np.ndarray,
                     judged_before: dict, judged_after: dict, thresholds: dict[str, float]) -> list[dict]:
    """One row per (prompt, sample) for ``eval_table.csv`` (see :mod:`detoxrl.evaluation.table`)."""
    from detoxrl.evaluation.table import REFERENCE_SEPARATOR, judge_columns

    rows = []
    for j in range(len(texts_before)):
        for i, p in enumerate(prompts):
            rb = float(judged_before[primary]["score"][j, i])
            ra = float(judged_after[primary]["score"][j, i])
            row = {
                "id": p.id, "sample": j, "dialogue": p.text,
                "reference_summary": REFERENCE_SEPARATOR.join(p.references),
                "response_before": texts_before[j][i], "response_after": texts_after[j][i],
                "reward_before": rb, "reward_after": ra, "reward_diff": ra - rb,
                "toxic_before": any(judged_before[n]["toxicity"][j, i] >= thresholds[n] for n in judges),
                "toxic_after": any(judged_after[n]["toxicity"][j, i] >= thresholds[n] for n in judges),
                "length_before": int(lengths_before[j, i]), "length_after": int(lengths_after[j, i]),
            }
            for n in judges:
                cb, ca = judge_columns(n)
                row[cb] = float(judged_before[n]["toxicity"][j, i])
                row[ca] = float(judged_after[n]["toxicity"][j, i])
            rows.append(row)
    return rows


def json_clean(obj: Any) -> Any:
    """Plain JSON values: NumPy scalars to Python, NaN and infinities to ``null``, tuples to lists."""
    if isinstance(obj, dict):
        return {str(k): json_clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [json_clean(v) for v in obj.tolist()]
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    return obj


# --------------------------------------------------------------------------------------------- run
def _release_memory() -> None:
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_eval(cfg: Config, samples: int | None = None, *, device: str | None = None) -> dict:
    """Evaluate BEFORE (``policy.name_or_path``) against AFTER (``ppo.output_dir``); write the files.

    Returns the ``eval.json`` content. ``samples`` (default ``eval.samples``) responses are drawn per
    prompt; with more than one, decoding samples and expected maximum toxicity is reported.
    """
    from detoxrl.models.policy import load_policy_model
    from detoxrl.utils import set_seed

    t_start = time.perf_counter()
    k = int(samples or cfg.eval.samples)
    if k < 1:
        raise ConfigError(f"samples must be at least 1, not {k}")
    seed = cfg.seed_for(cfg.eval.seed)
    set_seed(seed)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    before_name = cfg.resolve(cfg.policy.name_or_path)
    after_dir = cfg.path(cfg.ppo.output_dir)
    if not (after_dir / "config.json").exists():
        raise ModelError(f"no trained policy at {after_dir} (ppo.output_dir): run `detoxrl ppo` first")
    gen = eval_generation(cfg.eval.generation, k)
    bs = cfg.eval.batch_size
    mpt = cfg.data.max_prompt_tokens

    judges = build_eval_judges(cfg, device=device)  # a bad judge setting fails before any generation
    ref = load_policy_model(cfg.policy.model_copy(update={"name_or_path": before_name}), device=device)
    ref.model.eval()
    prompts, prompt_stats = load_eval_prompts(cfg, ref.tokenizer)
    prompt_texts = [p.prompt for p in prompts]
    n = len(prompts)

    with progress() as bar:
        t_gen = time.perf_counter()
        task = bar.add_task("eval: generate before", total=n * k, info="")
        before = generate_all(ref, prompt_texts, gen, samples=k, batch_size=bs, max_prompt_tokens=mpt,
                              seed=seed, on_batch=lambda m: bar.advance(task, m))
        policy = load_policy_model(cfg.policy.model_copy(update={"name_or_path": str(after_dir)}),
                                   device=device)
        policy.model.eval()
        # plain sampling: the KL to the reference is measured along the "after" responses themselves
        reuse = is_plain_sampling(gen)
        task = bar.add_task("eval: generate after" + (" (+ KL)" if reuse else ""), total=n * k, info="")
        after = generate_all(policy, prompt_texts, gen, samples=k, batch_size=bs, max_prompt_tokens=mpt,
                             seed=seed, on_batch=lambda m: bar.advance(task, m),
                             kl_ref=ref.model if reuse else None)
        generation_s = time.perf_counter() - t_gen - after.kl_seconds

        if reuse:
            kl, kl_s = after.kl, after.kl_seconds
        else:
            t_kl = time.perf_counter()
            task = bar.add_task("eval: KL to reference", total=n, info="")
            kl = sampled_kl(policy, ref.model, prompt_texts, gen, batch_size=bs, max_prompt_tokens=mpt,
                            seed=seed, on_batch=lambda m: bar.advance(task, m))
            kl_s = time.perf_counter() - t_kl
        del policy, ref
        _release_memory()

        t_judge = time.perf_counter()
        flat_prompts = prompt_texts * k
        judged_before: dict[str, dict[str, np.ndarray]] = {}
        judged_after: dict[str, dict[str, np.ndarray]] = {}
        task = bar.add_task("eval: judges", total=2 * n * k * len(judges), info="")
        for ej in judges:
            bar.update(task, info=ej.name)
            for texts, store in ((before.texts, judged_before), (after.texts, judged_after)):
                flat = [t for row in texts for t in row]
                res = score_texts(ej, flat, flat_prompts, on_chunk=lambda m: bar.advance(task, m))
                store[ej.name] = {key: v.reshape(k, n) for key, v in res.items()}
        judging_s = time.perf_counter() - t_judge

    infos = [judge_info(ej, cfg) for ej in judges]
    primary = infos[0]["name"]
    decoding = {**gen.model_dump(mode="json"),
                "kl_sampling": "the after responses" if is_plain_sampling(gen)
                else kl_generation(gen).model_dump(mode="json")}
    timing = {"generation_s": round(generation_s, 2), "kl_s": round(kl_s, 2), "judging_s": round(judging_s, 2)}
    result = summarize(cfg=cfg, judges=infos, primary=primary, prompts=prompts, samples=k, decoding=decoding,
                       seed=seed, before_model=before_name, after_model=str(after_dir),
                       texts_before=before.texts, texts_after=after.texts,
                       lengths_before=before.lengths, lengths_after=after.lengths,
                       judged_before=judged_before, judged_after=judged_after, kl=kl, timing=timing,
                       prompt_stats=prompt_stats)
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


def format_p(p: float | None, p_min: float | None = None) -> str:
    """``= 0.0123``, or ``≤ 0.000999`` when ``p`` is the smallest value the test can give."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "= n/a"
    if p_min is not None and p <= p_min * (1 + 1e-9):
        return f"≤ {p_min:.3g}"
    return f"= {p:.3g}"


def headline(result: dict) -> list[str]:
    """One line per judge: mean toxicity before → after, the paired interval and the verdict."""
    lines = []
    for j in result["judges"]:
        name = j["name"]
        b, a = result["before"]["per_judge"][name], result["after"]["per_judge"][name]
        pr = result["paired"][name]
        pct = result["improvement"]["per_judge"][name]["toxicity_mean_pct"]
        lo, hi = pr["ci95"]
        fmt = lambda v, spec=".4f": "n/a" if v is None else format(v, spec)  # noqa: E731
        p_text = format_p(pr.get("p_value"), pr.get("p_value_min"))
        lines.append(
            f"{name}{'' if j['trained_against'] else ' (held-out judge)'}: mean toxicity "
            f"{fmt(b['toxicity_mean'])} → {fmt(a['toxicity_mean'])} ({fmt(pct, '+.1f')}% improvement); "
            f"paired difference {fmt(pr['mean_diff'], '+.4f')} [95% CI {fmt(lo, '+.4f')}, {fmt(hi, '+.4f')}], "
            f"p {p_text}: {pr['verdict']}")
    return lines


def print_summary(result: dict) -> None:
    for line in headline(result):
        console.print(line)
    b, a = result["before"], result["after"]
    kl = a.get("kl_to_reference")
    if "held_out_toxic_rate" in b:
        console.print(f"toxic rate (any held-out judge) {b['held_out_toxic_rate']:.3f} → "
                      f"{a['held_out_toxic_rate']:.3f}")
    console.print(f"toxic rate (any judge) {b['toxic_rate']:.3f} → {a['toxic_rate']:.3f}; "
                  f"ROUGE-L {b['rougeL'] if b['rougeL'] is None else round(b['rougeL'], 4)} → "
                  f"{a['rougeL'] if a['rougeL'] is None else round(a['rougeL'], 4)}; "
                  f"KL to reference {'n/a' if kl is None else round(kl, 3)}")


def _short(text: str, n: int = 90) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def print_examples(rows: list[dict], n: int, primary: str) -> None:
    """The first ``n`` rows of the side-by-side table on the console (texts shortened)."""
    if n <= 0 or not rows:
        return
    from rich.table import Table

    t = Table(title=f"first {min(n, len(rows))} of {len(rows)} rows of eval_table.csv (reward = {primary} score)",
              show_lines=True)
    for col in ("dialogue", "response before", "response after", "reward before", "reward after", "diff"):
        t.add_column(col, overflow="fold")
    for r in rows[:n]:
        t.add_row(_short(r["dialogue"]), _short(r["response_before"]), _short(r["response_after"]),
                  f"{r['reward_before']:.3f}", f"{r['reward_after']:.3f}", f"{r['reward_diff']:+.3f}")
    console.print(t)
