"""``detoxrl critique-eval``: the policy's self-critique as a classifier, per principle.

For every principle of ``sft.tasks.principles`` (principle id → label of the labels file), up to
``n / 2`` summaries that break it and ``n / 2`` that do not are drawn (seeded) from the held-out labels
file (``sft.tasks.eval_labels_file``; the testbed's test split), the model answers the critique request
for each (:mod:`detoxrl.constitution.prompts`), and P("yes") is compared with the label: accuracy,
precision, recall and F1 of ``P(yes) >= threshold`` (``constitution.sl.threshold``) and the AUC of
P(yes) (:func:`detoxrl.rewards.judge_eval.binary_metrics`; the sample is balanced, so accuracy is
balanced accuracy). The model is ``--model``, else the run's SFT policy when ``sft`` is enabled, else
``policy.name_or_path``. The result goes to ``{run_dir}/critique_eval_<model folder>.json``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import torch

from detoxrl.config import Config, ConstitutionSettings
from detoxrl.constitution.principles import Principle
from detoxrl.constitution.prompts import REQUEST_EXTRA_TOKENS, SelfCritic
from detoxrl.constitution.tasks import Labelled, principle_labels, read_labelled
from detoxrl.errors import DataError
from detoxrl.models.loading import LoadedPolicy, load_policy_model
from detoxrl.rewards.judge_eval import binary_metrics
from detoxrl.utils import console, progress, write_json


def balanced_sample(rows: Sequence[Labelled], label: str, n: int, rng: random.Random) -> list[Labelled]:
    """Up to ``n // 2`` rows with ``label`` and as many without, in a seeded random order."""
    pos = [r for r in rows if r.labels[label]]
    neg = [r for r in rows if not r.labels[label]]
    k = n // 2
    out = rng.sample(pos, min(k, len(pos))) + rng.sample(neg, min(n - k, len(neg)))
    rng.shuffle(out)
    return out


def critique_eval(lp: LoadedPolicy, principles: Sequence[tuple[Principle, str]], rows: Sequence[Labelled],
                  settings: ConstitutionSettings, *, n: int, seed: int, max_prompt_tokens: int,
                  threshold: float = 0.5, batch_size: int = 32, **answer_words) -> dict:
    """``{principle id: metrics}`` of the self-critique of ``lp`` (module docstring), with the label,
    the mean P(yes) of each class and one example of each class. ``answer_words``: ``yes_words`` and
    ``no_words`` of :class:`~detoxrl.constitution.prompts.SelfCritic`."""
    critic = SelfCritic(lp, [p for p, _ in principles], settings, max_prompt_tokens=max_prompt_tokens,
                        batch_size=batch_size, threshold=threshold, **answer_words)
    out = {}
    with progress() as bar:
        task = bar.add_task("critique-eval", total=len(principles), info="")
        for p, label in principles:
            sample = balanced_sample(rows, label, n, random.Random(f"{seed}:critique-eval:{p.id}"))
            if not sample:
                raise DataError(f"critique-eval: no labelled summaries for {p.id} ({label})")
            truth = [r.labels[label] for r in sample]
            prob = critic.p_yes([r.summary for r in sample], [r.dialogue for r in sample], only=[p.id])[p.id]
            m = binary_metrics(prob.tolist(), truth, threshold)
            y = torch.tensor(truth)
            m.update(label=label, threshold=threshold,
                     mean_p_yes_violating=float(prob[y].mean()) if y.any() else None,
                     mean_p_yes_compliant=float(prob[~y].mean()) if (~y).any() else None,
                     examples=[{"summary": sample[i].summary, "violates": truth[i], "p_yes": round(float(prob[i]), 4)}
                               for i in _one_of_each(truth)])
            out[p.id] = m
            bar.update(task, advance=1, info=f"{p.id}: AUC {m['auc']}")
    return out


def _one_of_each(truth: Sequence[bool]) -> list[int]:
    """The first index of a violating and of a compliant row (where there is one)."""
    firsts = (next((k for k, t in enumerate(truth) if t == want), None) for want in (True, False))
    return [i for i in firsts if i is not None]


def default_model(cfg: Config) -> str:
    """The run's SFT policy when ``sft`` is enabled, else ``policy.name_or_path``."""
    return str(cfg.path(cfg.sft.output_dir)) if cfg.sft.enabled else cfg.resolve(cfg.policy.name_or_path)


def format_critique_eval(result: dict) -> str:
    lines = [f"self-critique of {result['model']} ({result['labels_file']}):",
             f"  {'principle':<16} {'label':<13} {'n':>5} {'accuracy':>9} {'AUC':>7} {'P(yes) viol/compl':>18}"]
    for pid, m in result["principles"].items():
        acc = "–" if m["accuracy"] is None else f"{m['accuracy']:.3f}"
        auc = "–" if m["auc"] is None else f"{m['auc']:.3f}"
        means = "/".join("–" if v is None else f"{v:.2f}" for v in (m["mean_p_yes_violating"], m["mean_p_yes_compliant"]))
        lines.append(f"  {pid:<16} {m['label']:<13} {m['n']:>5} {acc:>9} {auc:>7} {means:>18}")
    return "\n".join(lines)


def run_critique_eval(cfg: Config, *, model: str | None = None, labels_file: str | Path | None = None,
                      n: int = 1000, device: str | None = None, echo=console.print) -> Path:
    """The ``critique-eval`` command: score, print, write (module docstring); returns the file written."""
    principles = principle_labels(cfg)
    if not principles:
        raise DataError("critique-eval: sft.tasks.principles maps no principle to a label of the labels file")
    path = Path(labels_file) if labels_file is not None else cfg.path(cfg.sft.tasks.eval_labels_file)
    rows = read_labelled(path, sorted({label for _, label in principles}), cfg)
    name = model or default_model(cfg)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    lp = load_policy_model(cfg.policy.model_copy(update={"name_or_path": name}), device=device)
    result = {"model": name, "labels_file": str(path), "n_per_principle": n, "seed": cfg.seed,
              "principles": critique_eval(lp, principles, rows, cfg.constitution, n=n, seed=cfg.seed,
                                          max_prompt_tokens=cfg.data.max_prompt_tokens + REQUEST_EXTRA_TOKENS,
                                          threshold=cfg.constitution.sl.threshold)}
    echo(format_critique_eval(result))
    out = cfg.run_path / f"critique_eval_{Path(name).name or 'model'}.json"
    write_json(out, result)
    echo(f"wrote {out}")
    return out
