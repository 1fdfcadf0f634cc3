"""``detoxrl generate``: the constitution's check-and-revise loop at inference time.

Prompts come from ``--prompt`` (repeatable) and/or a file: ``.jsonl`` rows with ``prompt`` (used as
is) or the data text column / ``text`` (filled into ``data.prompt_template``); ``.txt`` with one
prompt per line, or, when the file has blank lines, one prompt per blank-line-separated block. The
policy is ``--policy``, else the trained policy at ``ppo.output_dir`` if it exists, else
``policy.name_or_path``. Each response is checked against every principle; violating ones are revised
(``constitution.revision`` or ``--revision``) and everything is printed and written as jsonl.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from detoxrl.config import Config
from detoxrl.constitution.engine import ConstitutionEngine
from detoxrl.data.files import read_rows, read_texts
from detoxrl.data.prompts import fill_template
from detoxrl.errors import DataError, DetoxError
from detoxrl.models.generation import generate_responses
from detoxrl.models.loading import load_policy_model
from detoxrl.utils import progress, write_jsonl

GENERATIONS = "generations.jsonl"


def read_prompts(path: str | Path, cfg: Config, wrap: bool = False) -> list[str]:
    """Prompts of a ``.jsonl`` or ``.txt`` file (module docstring); ``wrap`` fills txt prompts into
    ``data.prompt_template``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"prompts file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        out = []
        for row in read_rows(path):
            if isinstance(row.get("prompt"), str) and row["prompt"].strip():
                out.append(row["prompt"])
                continue
            for col in (cfg.data.text_column, "text"):
                if isinstance(row.get(col), str) and row[col].strip():
                    out.append(fill_template(cfg.data.prompt_template, row[col]))
                    break
            else:
                raise DataError(f"{path} row {row['_row']}: no non-empty `prompt`, "
                                f"`{cfg.data.text_column}` or `text`")
    elif suffix == ".txt":
        out = read_texts(path, "prompts file")  # blank lines separate multi-line prompts
        if wrap:
            out = [fill_template(cfg.data.prompt_template, p) for p in out]
    else:
        raise DataError(f"prompts file {path}: unsupported extension {suffix!r} (use .jsonl or .txt)")
    if not out:
        raise DataError(f"prompts file {path} holds no prompts")
    return out


def default_policy(cfg: Config) -> str:
    """The trained policy at ``ppo.output_dir`` if it was saved, else ``policy.name_or_path``."""
    trained = cfg.path(cfg.ppo.output_dir)
    if (trained / "config.json").is_file():
        return str(trained)
    return cfg.resolve(cfg.policy.name_or_path)


def generate_with_constitution(cfg: Config, prompts: Sequence[str], *, constitution=None,
                               revision: str | None = None, policy: str | None = None,
                               seed: int | None = None, batch_size: int | None = None,
                               device: str | torch.device | None = None) -> list[dict]:
    """Generate a response per prompt, check it against every principle and revise violations.

    Returns one row per prompt: ``prompt``, ``response``, ``violations`` (ids), ``values`` (what each
    check measured), ``found`` (evidence), ``revision`` (text or None), ``revision_accepted``,
    ``remaining`` (ids the revision still violates), ``mode``, ``policy``.
    """
    prompts = list(prompts)
    if not prompts:
        raise DetoxError("no prompts: give --prompt TEXT (repeatable) or --prompts FILE")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    name = policy or default_policy(cfg)
    lp = load_policy_model(cfg.policy.model_copy(update={"name_or_path": name}), device=device)
    lp.model.eval()
    seed = cfg.seed_for(cfg.eval.seed) if seed is None else seed
    gen = cfg.eval.generation
    engine = ConstitutionEngine.from_config(
        cfg, device, constitution=constitution, revision=revision, seed=seed,
        policy=None if cfg.constitution.critic_model else lp)
    bs = batch_size or cfg.eval.batch_size
    rows: list[dict] = []
    with progress() as bar:
        task = bar.add_task("generate", total=len(prompts), info="")
        for start in range(0, len(prompts), bs):
            batch = prompts[start: start + bs]
            g = generate_responses(lp, batch, gen, max_prompt_tokens=cfg.data.max_prompt_tokens,
                                   seed=seed + start)
            verdicts, revisions = engine.check_and_revise(g.texts, batch)
            by_index = {r.index: r for r in revisions}
            for i, (p, t) in enumerate(zip(batch, g.texts)):
                r = by_index.get(i)
                rows.append({
                    "prompt": p, "response": t, "violations": verdicts.violated_ids(i),
                    "values": {pid: round(float(v[i]), 6) for pid, v in verdicts.values.items()},
                    "found": {pid: f[i] for pid, f in verdicts.found.items() if f and f[i]},
                    "revision": r.revised if r is not None else None,
                    "revision_accepted": bool(r.accepted) if r is not None else False,
                    "remaining": r.remaining if r is not None else verdicts.violated_ids(i),
                    "mode": engine.reviser.mode, "policy": name,
                })
            n_viol = sum(1 for r in rows if r["violations"])
            bar.update(task, completed=len(rows), info=f"{n_viol} with violations")
    return rows


def format_row(n: int, row: dict, max_prompt_chars: int = 300) -> str:
    """A plain-text block for one generation (prompt shortened)."""
    prompt = row["prompt"] if len(row["prompt"]) <= max_prompt_chars else row["prompt"][:max_prompt_chars] + "…"
    lines = [f"[{n}] prompt: " + prompt.replace("\n", "\n    "), f"    response: {row['response']}"]
    lines.append(f"    violations: {', '.join(row['violations']) or 'none'}")
    if row["revision"] is not None:
        status = "accepted" if row["revision_accepted"] else "not better, rejected"
        lines.append(f"    revision ({row['mode']}, {status}): {row['revision']}")
        lines.append(f"    still violated after revision: {', '.join(row['remaining']) or 'none'}")
    return "\n".join(lines)


def run_generate(cfg: Config, *, prompts: Sequence[str] = (), prompts_file: str | Path | None = None,
                 wrap: bool = False, constitution: str | Path | None = None, revision: str | None = None,
                 policy: str | None = None, output: str | Path | None = None, seed: int | None = None,
                 echo=print) -> Path:
    """The ``generate`` command: read prompts, run :func:`generate_with_constitution`, print, write."""
    texts = [fill_template(cfg.data.prompt_template, p) if wrap else p for p in prompts]
    if prompts_file is not None:
        texts += read_prompts(prompts_file, cfg, wrap=wrap)
    rows = generate_with_constitution(cfg, texts, constitution=constitution, revision=revision,
                                      policy=policy, seed=seed)
    for n, row in enumerate(rows, 1):
        echo(format_row(n, row))
    n_viol = sum(1 for r in rows if r["violations"])
    n_fixed = sum(1 for r in rows if r["revision_accepted"])
    echo(f"{len(rows)} response(s), {n_viol} with violations, {n_fixed} revised")
    out = Path(output) if output is not None else cfg.path(cfg.constitution.output_dir) / GENERATIONS
    write_jsonl(out, rows)
    echo(f"wrote {out}")
    return out
