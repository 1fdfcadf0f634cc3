"""``sft``: supervised fine-tuning of a seq2seq or causal LM on (prompt, target) pairs, full or LoRA.

On the testbed this produces the base (reference) policy: a tiny T5 that summarises dialogues and,
because a share of its training summaries repeat the insults they read, parrots toxicity the way real
base models do. With ``sft.tasks`` it is multi-task, as an instruction-tuned model is: it also learns to
answer critique requests (yes or no, then why) and revision requests from the testbed's labelled
summaries (:mod:`detoxrl.constitution.tasks`); those pairs are ``critique_share + revision_share`` more
pairs per summarisation pair, and the requests may be up to ``REQUEST_EXTRA_TOKENS`` longer.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from detoxrl.config import Config, ModelSettings, SFTSettings
from detoxrl.constitution.prompts import REQUEST_EXTRA_TOKENS
from detoxrl.constitution.tasks import counts, task_pairs
from detoxrl.data.loaders import load_examples, load_table
from detoxrl.data.prompts import fill_template
from detoxrl.errors import DataError
from detoxrl.models.policy import LoadedPolicy, length_multiple, load_policy_model, save_policy
from detoxrl.models.precision import resolve_dtype
from detoxrl.optim import MasterWeights
from detoxrl.stages.device import stage_device
from detoxrl.utils import atomic_dir, console, progress, round_up, set_seed, write_json


@dataclass
class Pair:
    prompt: str
    target: str


def load_pairs(cfg: Config) -> list[Pair]:
    """(prompt, target) pairs from ``sft.train_file`` or the data section's train split."""
    s = cfg.sft
    if s.train_file:
        path = cfg.path(s.train_file)
        res = load_table(path, "auto", cfg.data.text_column, [s.target_column],
                         skip_bad_rows=cfg.data.skip_bad_rows, max_rows=cfg.data.max_train_rows)
    else:
        res = load_examples(cfg, cfg.data.train_split)
    if not res.examples:
        raise DataError(f"no (prompt, target) pairs to fine-tune on in {res.source}")
    template = cfg.data.prompt_template
    return [Pair(fill_template(template, ex.text), ex.references[0]) for ex in res.examples]


def encode(lp: LoadedPolicy, pairs: list[Pair], max_prompt: int, max_target: int):
    tok = lp.tokenizer
    prompts = tok([p.prompt for p in pairs], truncation=True, max_length=max_prompt)["input_ids"]
    targets = tok([p.target for p in pairs], truncation=True, max_length=max_target)["input_ids"]
    eos = lp.eos_id
    targets = [t if t and t[-1] == eos else (t + [eos])[-max_target:] for t in targets]
    if lp.is_seq2seq:
        return list(zip(prompts, targets))
    # decoder-only: one sequence, loss on the target part only
    bos = [tok.bos_token_id] if tok.bos_token_id is not None and tok.bos_token_id != eos else []
    return [(bos + p, t) for p, t in zip(prompts, targets)]


def collate(lp: LoadedPolicy, items, device, multiple: int = 1):
    """One batch, right-padded to its longest row rounded up to ``multiple`` (masked, label -100)."""
    pad = lp.pad_id
    if lp.is_seq2seq:
        lp_max = round_up(max(len(p) for p, _ in items), multiple)
        lt_max = round_up(max(len(t) for _, t in items), multiple)
        ids = torch.full((len(items), lp_max), pad, dtype=torch.long)
        att = torch.zeros_like(ids)
        labels = torch.full((len(items), lt_max), -100, dtype=torch.long)
        for i, (p, t) in enumerate(items):
            ids[i, : len(p)] = torch.tensor(p)
            att[i, : len(p)] = 1
            labels[i, : len(t)] = torch.tensor(t)
        return dict(input_ids=ids.to(device), attention_mask=att.to(device), labels=labels.to(device))
    seqs = [p + t for p, t in items]
    n = round_up(max(len(s) for s in seqs), multiple)
    ids = torch.full((len(items), n), pad, dtype=torch.long)
    att = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for i, (p, t) in enumerate(items):
        s = p + t
        ids[i, : len(s)] = torch.tensor(s)
        att[i, : len(s)] = 1
        labels[i, len(p): len(s)] = torch.tensor(t)
    return dict(input_ids=ids.to(device), attention_mask=att.to(device), labels=labels.to(device))


MEGABATCH = 50
"""``sft.group_by_length`` sorts the rows of each run of ``MEGABATCH`` batches (as Hugging Face's
``group_by_length`` does), so rows of a batch have about the same length and little padding."""


def length_grouped_batches(lengths: list[tuple[int, int]], batch_size: int, g: torch.Generator,
                           megabatch: int = MEGABATCH) -> list[list[int]]:
    """One epoch's batches of row indices with little padding: a random permutation cut into runs of
    ``megabatch × batch_size`` rows, each run sorted by (prompt, target) length, longest first, and cut into
    batches; the batches are then shuffled, so the epoch does not go from long to short. Every row appears
    exactly once; ``lengths[i]`` is row ``i``'s (prompt tokens, target tokens)."""
    perm = torch.randperm(len(lengths), generator=g).tolist()
    size = megabatch * batch_size
    batches: list[list[int]] = []
    for start in range(0, len(perm), size):
        run = sorted(perm[start: start + size], key=lambda i: lengths[i], reverse=True)
        batches += [run[i: i + batch_size] for i in range(0, len(run), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]


def sequence_loss(lp: LoadedPolicy, batch) -> torch.Tensor:
    """Mean token cross-entropy of the targets (HF's built-in label shifting for each shape)."""
    return lp.model(**batch).loss


@torch.no_grad()
def evaluate_loss(lp: LoadedPolicy, items, batch_size: int, device, multiple: int = 1) -> float:
    if not items:
        return float("nan")
    lp.model.eval()
    total, count = 0.0, 0
    for i in range(0, len(items), batch_size):
        chunk = items[i: i + batch_size]
        batch = collate(lp, chunk, device, multiple)
        n_tok = int((batch["labels"] != -100).sum())
        total += float(sequence_loss(lp, batch)) * n_tok
        count += n_tok
    lp.model.train()
    return total / max(count, 1)


def lr_lambda(warmup: int, total: int):
    """Linear warm-up to the peak learning rate, then linear decay to zero."""

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return f


def output(cfg: Config) -> Path:
    """The file whose presence means the stage is done."""
    return cfg.path(cfg.sft.output_dir) / "config.json"


def run(cfg: Config, device: str | torch.device | None = None) -> Path:
    """Fine-tune ``sft.base_model`` (default: ``policy``) and save it to ``sft.output_dir``."""
    s = cfg.sft
    device = device or stage_device(cfg)
    seed = cfg.seed_for(s.seed)
    set_seed(seed)
    base: ModelSettings = s.base_model or cfg.policy
    dtype = resolve_dtype(base.dtype, device, key="sft.base_model.dtype" if s.base_model else "policy.dtype")
    base = base.model_copy(update={"name_or_path": cfg.resolve(base.name_or_path), "dtype": dtype.choice})
    pairs = load_pairs(cfg)
    tasks = task_pairs(cfg, len(pairs), seed) if s.tasks.enabled else []
    lp = load_policy_model(base, device=device, apply_lora=True)
    items = encode(lp, pairs, cfg.data.max_prompt_tokens, s.max_target_tokens)
    if tasks:
        items += encode(lp, [Pair(t.prompt, t.target) for t in tasks],
                         cfg.data.max_prompt_tokens + REQUEST_EXTRA_TOKENS, s.max_target_tokens)
    # Lengths bucketed where oneDNN would keep new kernels for every new shape (see sft.length_multiple).
    multiple = length_multiple(s.length_multiple, lp.model, autocast=False)

    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(items), generator=g).tolist()
    n_eval = min(s.eval_rows, len(items) // 10)
    eval_items = [items[i] for i in order[:n_eval]]
    train_items = [items[i] for i in order[n_eval:]]

    eval_before = evaluate_loss(lp, eval_items, 64, device, multiple)
    t0 = time.perf_counter()
    step, history = fit(s, lp, train_items, g, device, multiple)
    train_s = time.perf_counter() - t0
    eval_after = evaluate_loss(lp, eval_items, 64, device, multiple)
    console.print(f"sft: held-out loss {eval_before:.3f} -> {eval_after:.3f} "
                  f"({len(train_items)} pairs, {len(tasks)} critique or revision examples in all, {step} steps, "
                  f"{train_s:.0f}s)")

    out = cfg.path(s.output_dir)
    metrics = {"train_pairs": len(train_items), "eval_pairs": len(eval_items), "steps": step,
               "epochs": s.epochs, "eval_loss_before": eval_before, "eval_loss_after": eval_after,
               "train_seconds": train_s, "history": history, "base_model": base.name_or_path,
               "task_pairs": counts(tasks)}
    with atomic_dir(out) as tmp:
        save_policy(lp.model, lp.tokenizer, tmp, base_name=base.name_or_path,
                    extra={"stage": "sft", "precision": {dtype.key: dtype.as_dict()}})
        write_json(tmp / "sft_metrics.json", metrics)
    return out


def fit(s: SFTSettings, lp: LoadedPolicy, train_items, g: torch.Generator, device,
        multiple: int, label: str = "sft") -> tuple[int, list[dict]]:
    """The optimisation loop over encoded pairs (:func:`encode`) with ``s``'s epochs, batch size and
    optimiser settings: AdamW with warm-up and linear decay; returns (steps, loss history)."""
    steps_per_epoch = math.ceil(len(train_items) / s.batch_size)
    total = max(1, int(round(steps_per_epoch * s.epochs)))
    # bfloat16/float16 weights (policy.dtype) train through float32 masters; float32 ones directly.
    masters = MasterWeights([p for p in lp.model.parameters() if p.requires_grad])
    params = masters.params
    opt = torch.optim.AdamW(params, lr=s.learning_rate, weight_decay=s.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(int(total * s.warmup_ratio), total))
    lp.model.train()
    history: list[dict] = []
    step, ema = 0, None
    with progress() as bar:
        task = bar.add_task(label, total=total, info="")
        while step < total:
            if s.group_by_length:
                batches = length_grouped_batches([(len(p), len(t)) for p, t in train_items], s.batch_size, g)
            else:
                perm = torch.randperm(len(train_items), generator=g).tolist()
                batches = [perm[i: i + s.batch_size] for i in range(0, len(perm), s.batch_size)]
            for rows in batches:
                if step >= total:
                    break
                batch = collate(lp, [train_items[j] for j in rows], device, multiple)
                loss = sequence_loss(lp, batch)
                loss.backward()
                masters.grads_to_masters()
                torch.nn.utils.clip_grad_norm_(params, s.max_grad_norm)
                opt.step()
                masters.masters_to_model()
                sched.step()
                opt.zero_grad(set_to_none=True)
                step += 1
                lv = float(loss.detach())
                ema = lv if ema is None else 0.95 * ema + 0.05 * lv
                if step % 10 == 0 or step == total:
                    history.append({"step": step, "loss": lv, "lr": sched.get_last_lr()[0]})
                bar.update(task, advance=1, info=f"loss {ema:.3f}")
    return step, history
