"""A Hugging Face model card (``README.md``) beside the saved policy.

The card has the hub's YAML front matter (``base_model``, ``library_name``, ``tags``, ``datasets``,
``license``, ``pipeline_tag``) followed by Markdown: what the model is, how it was trained (base model,
data, judges, key PPO settings) and the evaluation table with 95% confidence intervals from
``eval.json``. ``base_model`` and ``datasets`` are written only when they are hub ids: a local folder
(the embedded testbed) is named in the text instead, so that the card stays valid on the hub.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from detoxrl.config import Config
from detoxrl.evaluation.printing import format_p
from detoxrl.rewards.presets import apply_preset
from detoxrl.utils import atomic_write_text

TAGS = ["detoxrl", "rlhf", "ppo", "detoxification"]
_KNOWN_LICENSES = (
    (re.compile(r"^(google/flan-t5|google-t5/|t5-|google/t5)"), "apache-2.0"),
    (re.compile(r"^(openai-community/)?(gpt2|distilgpt2)"), "mit"),
)
_PROJECT_LICENSE = "apache-2.0"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def is_hub_id(name: str | None) -> bool:
    """``owner/name`` (or a bare canonical name) that is not a local path."""
    if not name or "{run_dir}" in name:
        return False
    if name.startswith((".", "/", "~")) or Path(name).exists():
        return False
    return bool(_HUB_ID.match(name))


def known_license(base_model: str | None, testbed: bool) -> str | None:
    """The base model's license when it is one we know; the project's for a testbed model."""
    if testbed:
        return _PROJECT_LICENSE
    for pattern, lic in _KNOWN_LICENSES:
        if base_model and pattern.match(base_model):
            return lic
    return None


def _is_seq2seq(cfg: Config, policy_dir: Path) -> bool:
    if cfg.policy.kind != "auto":
        return cfg.policy.kind == "seq2seq"
    try:
        return bool(json.loads((policy_dir / "config.json").read_text(encoding="utf-8")).get("is_encoder_decoder"))
    except (OSError, ValueError):
        return True


def front_matter(cfg: Config, policy_dir: Path) -> dict[str, Any]:
    base = cfg.resolve(cfg.policy.name_or_path)
    testbed = cfg.data.source == "testbed"
    meta: dict[str, Any] = {}
    if is_hub_id(base):
        meta["base_model"] = base
    meta["library_name"] = "transformers"
    meta["pipeline_tag"] = "text2text-generation" if _is_seq2seq(cfg, policy_dir) else "text-generation"
    meta["tags"] = list(TAGS) + (["testbed"] if testbed else [])
    if not testbed and is_hub_id(cfg.resolve(cfg.data.source)):
        meta["datasets"] = [cfg.resolve(cfg.data.source)]
    lic = known_license(base, testbed)
    if lic:
        meta["license"] = lic
    return meta


def _f(v: Any, spec: str = ".4f") -> str:
    return "–" if v is None else format(v, spec) if isinstance(v, (int, float)) else str(v)


def _ci(v: Any, ci: Any, spec: str = ".4f") -> str:
    if not isinstance(ci, list) or len(ci) != 2 or None in ci:
        return _f(v, spec)
    return f"{_f(v, spec)} [{_f(ci[0], spec)}, {_f(ci[1], spec)}]"


def _md_cell(s: Any) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def evaluation_markdown(ev: dict | None) -> str:
    """The evaluation section: overall metrics and per-judge toxicity, with 95% intervals."""
    if not ev:
        return "## Evaluation\n\nNot evaluated yet: run `detoxrl eval`, then `detoxrl report`.\n"
    b, a, imp = ev["before"], ev["after"], ev.get("improvement", {})
    primary = ev.get("primary_judge", "")
    lines = [
        "## Evaluation",
        "",
        f"{ev.get('n_prompts')} held-out prompts (split `{ev.get('split')}`), {ev.get('samples', 1)} response(s) "
        f"each, the same decoding for both models. *Before* is the base model, *after* this model. Brackets: "
        f"95% bootstrap intervals over prompts. Toxicity and reward are the primary judge's (`{primary}`) "
        "unless a judge is named; the toxic rate counts a response flagged by any judge.",
        "",
        "| metric | before | after | change |",
        "|---|---|---|---|",
        f"| toxicity mean | {_ci(b.get('toxicity_mean'), b.get('toxicity_ci95'))} | "
        f"{_ci(a.get('toxicity_mean'), a.get('toxicity_ci95'))} | {_f(imp.get('toxicity_mean_pct'), '+.1f')}% improvement |",
        f"| toxicity std | {_ci(b.get('toxicity_std'), b.get('toxicity_std_ci95'))} | "
        f"{_ci(a.get('toxicity_std'), a.get('toxicity_std_ci95'))} | {_f(imp.get('toxicity_std_pct'), '+.1f')}% improvement |",
        f"| toxic rate (any judge) | {_ci(b.get('toxic_rate'), b.get('toxic_rate_ci95'))} | "
        f"{_ci(a.get('toxic_rate'), a.get('toxic_rate_ci95'))} | {_f(imp.get('toxic_rate_abs'), '+.4f')} fewer |",
        f"| reward mean | {_ci(b.get('reward_mean'), b.get('reward_ci95'))} | "
        f"{_ci(a.get('reward_mean'), a.get('reward_ci95'))} | {_f(imp.get('reward_mean_diff'), '+.4f')} |",
    ]
    if "expected_max_toxicity" in b:
        lines.append(f"| expected max toxicity | {_ci(b.get('expected_max_toxicity'), b.get('expected_max_toxicity_ci95'))}"
                     f" | {_ci(a.get('expected_max_toxicity'), a.get('expected_max_toxicity_ci95'))} | |")
    for key, label in (("rouge1", "ROUGE-1"), ("rouge2", "ROUGE-2"), ("rougeL", "ROUGE-L"),
                       ("distinct_2", "distinct-2")):
        lines.append(f"| {label} | {_f(b.get(key))} | {_f(a.get(key))} | |")
    lines.append(f"| length (tokens) | {_f(b.get('length_mean'), '.1f')} | {_f(a.get('length_mean'), '.1f')} | |")
    lines.append(f"| KL to base (nats/response) | – | {_ci(a.get('kl_to_reference'), a.get('kl_to_reference_ci95'))} | |")
    lines += ["", "Per judge (paired over the same prompts; p from a sign-flip permutation test):", "",
              "| judge | trained against | toxicity before | toxicity after | difference | p | verdict |",
              "|---|---|---|---|---|---|---|"]
    for j in ev.get("judges", []):
        n = j["name"]
        pb, pa = b.get("per_judge", {}).get(n, {}), a.get("per_judge", {}).get(n, {})
        pr = ev.get("paired", {}).get(n, {})
        lines.append(f"| {_md_cell(n)} | {'yes' if j.get('trained_against') else 'no (held out)'} | "
                     f"{_ci(pb.get('toxicity_mean'), pb.get('toxicity_ci95'))} | "
                     f"{_ci(pa.get('toxicity_mean'), pa.get('toxicity_ci95'))} | "
                     f"{_ci(pr.get('mean_diff'), pr.get('ci95'), '+.4f')} | "
                     f"{format_p(pr.get('p_value'), pr.get('p_value_min')).lstrip('= ')} | "
                     f"{_md_cell(pr.get('verdict', ''))} |")
    dims = (ev.get("per_dimension") or {}).get("all") or {}
    covered = {d: c for d, c in dims.items() if not c.get("absent")}
    if covered:
        lines += ["", "Toxic rate per dimension (a judge reporting it at or above its threshold; any judge):", ""]
        lines += [f"- **{_md_cell(d)}:** {_ci(c['before'].get('toxic_rate'), c['before'].get('toxic_rate_ci95'))} → "
                  f"{_ci(c['after'].get('toxic_rate'), c['after'].get('toxic_rate_ci95'))}" for d, c in covered.items()]
    return "\n".join(lines) + "\n"


def _judge_rows(cfg: Config) -> list[str]:
    rows = ["| judge | type | model | role |", "|---|---|---|---|"]
    for settings, role in [(s, "reward") for s in cfg.reward.judges] + [(s, "held out (evaluation only)")
                                                                        for s in cfg.eval.extra_judges]:
        try:
            s = apply_preset(settings)
        except Exception:  # noqa: BLE001 - the card describes, it does not validate
            s = settings
        model = (cfg.resolve(s.model) if s.model else "") if s.type in ("hf", "reward_model", "self_critique") else (
            f"word list {s.lexicon}" if s.type == "lexicon" else "alt-profanity-check")
        rows.append(f"| {_md_cell(s.name)} | {s.type} | {_md_cell(model)} | {role} |")
    return rows


def _run_note(policy_dir: Path) -> dict:
    """``detoxrl.json`` beside the policy (what the PPO stage recorded), or ``{}``."""
    try:
        note = json.loads((policy_dir / "detoxrl.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return note if isinstance(note, dict) else {}


def _stop_lines(cfg: Config, note: dict) -> list[str]:
    """How PPO ended (``stop``), the probe's settings and its reward-hacking warnings, as list items."""
    p, lines = cfg.ppo, []
    stop = note.get("stop")
    if isinstance(stop, dict):
        lines.append(f"- **Stopped:** after step {stop.get('step')} (at most {note.get('steps', p.steps)}): "
                     f"{_md_cell(stop.get('reason'))}")
    if p.probe_every:
        lines.append(f"- **Probe:** every {p.probe_every} steps, {p.probe_prompts} held-out prompts answered "
                     "greedily, scored by every judge and ROUGE-L (`probe/*` in `ppo/metrics.jsonl`)")
    warnings = note.get("probe_warnings") or []
    if warnings:
        shown = "; ".join(f"step {w.get('step')}: {_md_cell(w.get('message'))}" for w in warnings[:3])
        lines.append(f"- **Probe warnings ({len(warnings)}):** {shown}" + (" …" if len(warnings) > 3 else ""))
    return lines


def _curriculum_text(cfg: Config) -> str:
    """``off``, or ``on`` with its pacing and difficulty; for the tier difficulty, how the tiers were set."""
    c = cfg.curriculum
    if not c.enabled:
        return "off"
    if c.difficulty != "tier":
        return f"on ({c.pacing} pacing, {c.difficulty} difficulty)"
    a, b = c.tier_thresholds
    return (f"on ({c.pacing} pacing) over three tiers clean → ambiguous → harmful (mild, then severe): from the "
            f"data's `{_md_cell(c.tier_column)}` and `{_md_cell(c.grade_column)}` columns where present, else by the "
            f"judges' toxicity of the prompt (clean below {a:g}, ambiguous below {b:g}) and severity "
            f"(severe from {c.severe_at:g})")


def _training_markdown(cfg: Config, base: str, note: dict | None = None) -> list[str]:
    """The "Training" section: base model, prompts, PPO and KL settings, how PPO stopped, sampling, seed,
    judges (``note``: the policy's ``detoxrl.json``)."""
    testbed = cfg.data.source == "testbed"
    p, k = cfg.ppo, cfg.ppo.kl
    data = "the embedded synthetic testbed (DialogSum-style dialogues, some with hostile turns)" if testbed \
        else f"`{cfg.resolve(cfg.data.source)}` (train split `{cfg.data.train_split}`)"
    lora = (f"LoRA r={cfg.policy.lora.r}, alpha={cfg.policy.lora.alpha} on {', '.join(cfg.policy.lora.target_modules)}"
            " (merged into these weights; the adapter alone is in `adapter/`)" if cfg.policy.lora.enabled
            else "full fine-tuning")
    return [
        "## Training",
        "",
        f"- **Base model:** `{base}`" + (f" (itself fine-tuned from `{cfg.resolve(cfg.sft.base_model.name_or_path)}`"
                                         " by detoxrl's SFT stage)" if cfg.sft.enabled and cfg.sft.base_model else ""),
        f"- **Prompts:** {data}; template `{_md_cell(cfg.data.prompt_template)}`",
        f"- **Method:** PPO, {p.steps} steps of {p.batch_size} prompts, {p.ppo_epochs} epoch(s) of minibatches of "
        f"{p.mini_batch_size}, learning rate {p.learning_rate:g}, clip range {p.cliprange}, "
        f"GAE γ={p.gamma} λ={p.lam}; {lora}",
        f"- **KL penalty:** `{k.penalty}`, initial coefficient {k.init_coef}"
        + (f", adaptive (target {k.target}, horizon {k.horizon})" if k.adaptive else ", fixed"),
        *_stop_lines(cfg, note or {}),
        f"- **Sampling during training:** up to {p.generation.max_new_tokens} new tokens, temperature "
        f"{p.generation.temperature}, top-k {p.generation.top_k}, top-p {p.generation.top_p}",
        f"- **Curriculum:** {_curriculum_text(cfg)}; **constitution:** {'on' if cfg.constitution.enabled else 'off'}",
        f"- **Seed:** {cfg.seed}",
        "",
        "### Judges",
        "",
        *_judge_rows(cfg),
        "",
    ]


def _usage_markdown(cfg: Config, auto: str) -> list[str]:
    """The "Usage" snippet (plain transformers) and the "Limitations" section."""
    return [
        "## Usage",
        "",
        "```python",
        f"from transformers import AutoTokenizer, {auto}",
        "",
        'dialogue = "#Person1#: Could you help me with the report?\\n#Person2#: Sure, send it over."',
        'tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")',
        f'model = {auto}.from_pretrained("path/to/this/folder")',
        f"prompt = {json.dumps(cfg.data.prompt_template)}.replace(\"{{text}}\", dialogue)",
        'out = model.generate(**tokenizer(prompt, return_tensors="pt"), max_new_tokens=64)',
        "print(tokenizer.decode(out[0], skip_special_tokens=True))",
        "```",
        "",
        "## Limitations",
        "",
        "Toxicity here is what the judges above measure; a judge misses what it was not trained to see, "
        "so the held-out judges are reported beside the reward judges. Lower toxicity can cost summary "
        "quality (see ROUGE) and the KL to the base model says how far the model moved.",
        "",
    ]


def card_markdown(cfg: Config, policy_dir: Path, ev: dict | None) -> str:
    meta = front_matter(cfg, policy_dir)
    base = cfg.resolve(cfg.policy.name_or_path)
    seq2seq = meta["pipeline_tag"] == "text2text-generation"
    auto = "AutoModelForSeq2SeqLM" if seq2seq else "AutoModelForCausalLM"
    parts = [
        "---",
        yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).rstrip(),
        "---",
        "",
        f"# {cfg.name}: a less toxic {Path(base).name if not is_hub_id(base) else base}",
        "",
        f"This model was fine-tuned with detoxrl using reinforcement "
        f"learning from AI feedback: PPO with a KL penalty against the frozen base model `{base}`, rewarded "
        "by toxicity judges for responses that are not toxic.",
    ]
    if cfg.data.source == "testbed":
        parts += ["", "**This is a testbed model**: a tiny model trained offline on detoxrl's synthetic corpus "
                  "to exercise the pipeline. It is not meant for real use."]
    parts += ["", *_training_markdown(cfg, base, _run_note(policy_dir)), evaluation_markdown(ev),
              *_usage_markdown(cfg, auto)]
    return "\n".join(parts)


def provenance_markdown(provenance: dict | None) -> str:
    """The "Provenance" section: the fingerprints of what the card describes, settings changed on resume."""
    if not provenance:
        return ""
    lines = ["## Provenance", ""]
    lines += [f"- **{k}:** `{v or 'not recorded'}`" for k, v in provenance.get("fingerprints", {}).items()]
    lines += [f"- **Warning:** {w}" for w in provenance.get("warnings", [])]
    for change in provenance.get("config_changes", []):
        lines.append(f"- **Resumed at step {change['at_step']} with other settings** (`--allow-config-change`): "
                     + "; ".join(f"`{c}`" for c in change["changes"]))
    return "\n".join(lines + ["", "`ppo.fingerprint.json` in this folder lists what the policy was made from.", ""])


def write_model_card(cfg: Config, policy_dir: str | Path, eval_result: dict | None,
                     provenance: dict | None = None) -> Path:
    """Write ``README.md`` (Hugging Face model card) into ``policy_dir`` atomically; return its path."""
    policy_dir = Path(policy_dir)
    out = policy_dir / "README.md"
    atomic_write_text(out, card_markdown(cfg, policy_dir, eval_result) + "\n" + provenance_markdown(provenance))
    return out
