"""The ``self_critique`` judge: a frozen model's own critique of a response as a reward signal (RLAIF).

For response ``x`` to a prompt with dialogue ``c`` and each principle ``k`` of ``principles`` (ids of the
constitution file, their words ``text_k``), the frozen model ``M`` answers the critique request
(:func:`~detoxrl.rewards.critique.critique_request`, template ``constitution.critique_request``) and::

    v_k(x)        = P_M("yes" | request(text_k, x, c))          P(x violates k), detoxrl.rewards.critique
    toxicity(x)   = max_k v_k(x)                                 violates some principle
    dimensions_d  = max_{k: dimensions[k] = d} v_k(x)            for each dimension d mapped to
    score(x)      = prob_score(1 − toxicity(x), settings.score)  higher = cleaner (prob, logprob or logit)

``c`` is the prompt with ``data.prompt_template`` taken off (:func:`dialogue_from_prompt`); without a
template that matches, the whole prompt. ``M`` is loaded from ``model`` (a folder, usually the SFT
model) as a copy of its own, in eval mode with ``requires_grad`` off: PPO never updates it, so the policy
cannot teach its grader to pass it. :meth:`SelfCritiqueJudge.p_violates` gives every ``v_k``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from detoxrl.config import CRITIQUE_REQUEST, Config, JudgeSettings, read_yaml
from detoxrl.config.loading import resolve_constitution_path
from detoxrl.data.prompts import text_from_prompt
from detoxrl.errors import ConfigError
from detoxrl.models.loading import LoadedPolicy, load_policy_model
from detoxrl.rewards.base import Judge, JudgeResult, cpu_threads_for, prob_score
from detoxrl.rewards.critique import NO_WORDS, YES_WORDS, answer_ids, batched_p_yes, critique_request


def dialogue_from_prompt(prompt: str, template: str | None) -> str:
    """The ``{text}`` part of ``prompt`` when it was filled from ``template``, else ``prompt`` itself."""
    text = text_from_prompt(prompt, template) if template else None
    return prompt if text is None else text


def principle_texts(ids: Sequence[str] | None, path: str, cfg: Config | None = None,
                    judge: str = "self_critique") -> list[tuple[str, str]]:
    """``(id, words)`` of each principle id in ``ids`` (``None``: every principle, in file order), read
    from the constitution file ``path``."""
    source = resolve_constitution_path(path, cfg)
    data = read_yaml(source)
    rows = data.get("principles") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise ConfigError(f"judge {judge}: constitution file {source} has no list `principles`")
    words = {r.get("id"): r.get("principle") for r in rows if isinstance(r, dict)}
    ids = [k for k in words if isinstance(k, str)] if ids is None else ids
    missing = [i for i in ids if not isinstance(words.get(i), str) or not words[i].strip()]
    if missing:
        raise ConfigError(f"judge {judge}: principles {missing} are not principles (with words) of {source}; "
                          f"it has {sorted(k for k in words if isinstance(k, str))}")
    return [(i, words[i]) for i in ids]


class SelfCritiqueJudge(Judge):
    """P(violates) per principle from a frozen model's answer to the critique request (module docstring)."""

    def __init__(self, name: str, lp: LoadedPolicy, principles: Sequence[tuple[str, str]], *,
                 dimensions: Mapping[str, str] | None = None, score: str = "logit", threshold: float = 0.5,
                 template: str = CRITIQUE_REQUEST, prompt_template: str | None = None, max_length: int = 512,
                 batch_size: int = 32, yes_words: Sequence[str] = YES_WORDS,
                 no_words: Sequence[str] = NO_WORDS) -> None:
        if not principles:
            raise ConfigError(f"judge {name}: type self_critique needs at least one principle")
        self.name, self.lp, self.principles = name, lp, list(principles)
        self.principle_dims = dict(dimensions or {})
        self.dimensions = tuple(sorted(set(self.principle_dims.values())))
        self.score_kind, self.threshold, self.template = score, threshold, template
        self.prompt_template, self.max_length, self.batch_size = prompt_template, max_length, batch_size
        self.yes, self.no = answer_ids(lp.tokenizer, yes_words, no_words, what=f"judge {name}")
        lp.model.eval().requires_grad_(False)
        self.threads = cpu_threads_for(lp.model, next(lp.model.parameters()).device)

    @property
    def model(self) -> torch.nn.Module:
        return self.lp.model

    def p_violates(self, texts: Sequence[str], prompts: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """``{principle id: v_k [B]}`` (float32, CPU): P("yes") of the critique request per principle."""
        dialogues = ([""] * len(texts) if prompts is None
                     else [dialogue_from_prompt(p or "", self.prompt_template) for p in prompts])
        out = {}
        with torch.inference_mode():
            for pid, words in self.principles:
                reqs = [critique_request(words, t or "", d, self.template) for t, d in zip(texts, dialogues)]
                out[pid] = batched_p_yes(self.lp, reqs, self.yes, self.no, self.max_length, self.batch_size)
        return out

    def _score_batch(self, texts: list[str], prompts: list[str] | None) -> JudgeResult:
        v = self.p_violates(texts, prompts)
        tox = torch.stack(list(v.values()), 0).amax(0)
        dims = {d: torch.stack([v[k] for k, dk in self.principle_dims.items() if dk == d], 0).amax(0)
                for d in self.dimensions}
        return JudgeResult(self.name, prob_score(1 - tox, self.score_kind), tox, dims, tox.clone(),
                           self.threshold, graded=False)


def build_self_critique_judge(s: JudgeSettings, cfg: Config | None, model: str,
                              device: str | torch.device = "cpu") -> SelfCritiqueJudge:
    """The judge of settings ``s`` (``type: self_critique``), its model loaded from ``model`` (resolved)."""
    if cfg is not None and Path(model).resolve() == cfg.path(cfg.ppo.output_dir).resolve():
        raise ConfigError(f"judge {s.name}: model {model} is ppo.output_dir, where the policy being trained is "
                          "saved; a self_critique judge needs a frozen model (the SFT model, {run_dir}/sft)")
    path = s.constitution or (cfg.constitution.path if cfg is not None else "configs/constitution.yaml")
    principles = principle_texts(s.principles, path, cfg, s.name)
    settings = cfg.policy.model_copy(update={"name_or_path": model}) if cfg is not None else model
    lp = load_policy_model(settings, device=device)  # a copy of its own, without trainable adapters
    template = cfg.constitution.critique_request if cfg is not None else CRITIQUE_REQUEST
    return SelfCritiqueJudge(s.name, lp, principles, dimensions=s.dimensions, score=s.score,
                             threshold=s.threshold, template=template, max_length=s.max_length,
                             prompt_template=cfg.data.prompt_template if cfg is not None else None,
                             batch_size=s.batch_size, yes_words=s.yes_words, no_words=s.no_words)
