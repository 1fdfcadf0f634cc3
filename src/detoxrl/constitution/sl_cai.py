"""Supervised Constitutional AI (Bai et al. 2022): critique, revise, keep what passes, train on it.

For each sampled response ``r`` to a prompt with dialogue ``d`` and each principle ``p``, the policy
answers the critique request; ``r`` violates ``p`` when ``P(yes) >= threshold``
(:class:`~detoxrl.constitution.prompts.SelfCritic`). A response that violates principles is revised,
by the policy answering the revision request of each violated principle in turn, in constitution order
(greedy decoding; :func:`policy_reviser`), or by the rule-based rewrite (:func:`rule_reviser`). The
revision is **kept** only when it is not empty, differs from ``r``, and its own critique passes: P(yes) is
below the threshold for *every* principle. Fine-tuning then uses ``(prompt, kept revision)`` pairs
(and, with ``include_compliant``, ``(prompt, r)`` for the responses that violated nothing).

Figures (:func:`sl_metrics`), with ``N`` responses, ``V_p`` those that violate ``p`` and ``K`` the kept
revisions:

- ``violation_rate_before[p] = |V_p| / N``;
- ``violation_rate_after[p]``: the same rate over the final responses (the kept revision where there is
  one, else the original response);
- ``accepted_share[p]``: the share of ``V_p`` whose revision was kept; ``accepted_share`` overall:
  ``|K|`` over the responses that violated at least one principle.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch

from detoxrl.config import ConstitutionSettings, GenerationSettings
from detoxrl.constitution.checks import PrincipleChecker
from detoxrl.constitution.principles import Principle
from detoxrl.constitution.prompts import revision_request
from detoxrl.constitution.revise import rewrite_batch
from detoxrl.models.generation import generate_responses
from detoxrl.models.loading import LoadedPolicy

Reviser = Callable[[list[str], list[str], list[str], list[list[str]]], list[str]]
"""``revise(responses, dialogues, prompts, violated principle ids) -> revisions``."""


@dataclass
class SLSample:
    """One sampled response, its critique, and its revision (where it violated a principle)."""

    prompt: str
    dialogue: str
    response: str
    p_yes: dict[str, float]
    violated: list[str]
    revision: str | None = None
    revision_p_yes: dict[str, float] = field(default_factory=dict)
    remaining: list[str] = field(default_factory=list)
    accepted: bool = False

    def as_row(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def _rows(probs: dict[str, torch.Tensor], i: int) -> dict[str, float]:
    return {pid: float(v[i]) for pid, v in probs.items()}


class SLCAI:
    """The critique → revision → acceptance loop (module docstring). ``critic.violations(responses,
    dialogues)`` returns ``(P(yes), violated)`` per principle id; ``revise`` is a :data:`Reviser`."""

    def __init__(self, critic, revise: Reviser) -> None:
        self.critic, self.revise = critic, revise

    def run(self, prompts: Sequence[str], dialogues: Sequence[str], responses: Sequence[str]) -> list[SLSample]:
        prompts, dialogues, responses = list(prompts), list(dialogues), list(responses)
        probs, viol = self.critic.violations(responses, dialogues)
        samples = [SLSample(p, d, r, _rows(probs, i), [pid for pid, v in viol.items() if bool(v[i])])
                   for i, (p, d, r) in enumerate(zip(prompts, dialogues, responses))]
        todo = [i for i, s in enumerate(samples) if s.violated]
        if not todo:
            return samples
        revised = self.revise([responses[i] for i in todo], [dialogues[i] for i in todo],
                              [prompts[i] for i in todo], [samples[i].violated for i in todo])
        probs2, viol2 = self.critic.violations([t.strip() for t in revised], [dialogues[i] for i in todo])
        for k, i in enumerate(todo):
            s, text = samples[i], revised[k].strip()
            s.revision, s.revision_p_yes = text, _rows(probs2, k)
            s.remaining = [pid for pid, v in viol2.items() if bool(v[k])]
            s.accepted = bool(text) and text != s.response.strip() and not s.remaining
        return samples


def training_pairs(samples: Sequence[SLSample], include_compliant: bool = False) -> list[dict]:
    """The fine-tuning data: ``{prompt, target, source}`` with source ``revision`` (a kept revision) or
    ``compliant`` (an unchanged response that violated nothing; only with ``include_compliant``)."""
    out = []
    for s in samples:
        if s.accepted:
            out.append({"prompt": s.prompt, "target": s.revision, "source": "revision",
                        "original": s.response, "principles": list(s.violated)})
        elif include_compliant and not s.violated and s.response.strip():
            out.append({"prompt": s.prompt, "target": s.response.strip(), "source": "compliant",
                        "original": s.response, "principles": []})
    return out


def sl_metrics(samples: Sequence[SLSample], ids: Sequence[str]) -> dict:
    """Violation rates before and after revision and the shares accepted (module docstring)."""
    n = len(samples)
    violating = [s for s in samples if s.violated]
    final = [s.remaining if s.accepted else s.violated for s in samples]
    per = {}
    for pid in ids:
        v_p = [s for s in samples if pid in s.violated]
        per[pid] = {"violation_rate_before": len(v_p) / n if n else None,
                    "violation_rate_after": sum(pid in f for f in final) / n if n else None,
                    "violating": len(v_p),
                    "accepted_share": sum(s.accepted for s in v_p) / len(v_p) if v_p else None}
    kept = sum(s.accepted for s in samples)
    return {"responses": n, "violating": len(violating),
            "violating_share_before": len(violating) / n if n else None,
            "violating_share_after": sum(bool(f) for f in final) / n if n else None,
            "revised": len(violating), "accepted": kept,
            "accepted_share": kept / len(violating) if violating else None, "principles": per}


def policy_reviser(lp: LoadedPolicy, principles: Sequence[Principle], settings: ConstitutionSettings,
                   gen: GenerationSettings, *, max_prompt_tokens: int, max_new_tokens: int,
                   batch_size: int = 32) -> Reviser:
    """The policy answers each violated principle's revision request in turn, greedily (module doc)."""
    greedy = gen.model_copy(update={"do_sample": False})

    def revise(responses, dialogues, prompts, targets):
        current = [r.strip() for r in responses]
        for p in principles:
            rows = [k for k, t in enumerate(targets) if p.id in t]
            requests = [revision_request(p, current[k], dialogues[k], settings.revision_request) for k in rows]
            answers: list[str] = []
            for i in range(0, len(requests), batch_size):
                answers += generate_responses(lp, requests[i: i + batch_size], greedy,
                                              max_prompt_tokens=max_prompt_tokens, max_new_tokens=max_new_tokens).texts
            for k, a in zip(rows, answers):
                if a.strip():
                    current[k] = a.strip()
        return current

    return revise


def rule_reviser(checker: PrincipleChecker) -> Reviser:
    """The rule-based rewrite (:func:`~detoxrl.constitution.revise.rewrite_batch`): the clauses that the
    violated principles' checks flag are removed."""

    def revise(responses, dialogues, prompts, targets):
        known = set(checker.checks)
        return rewrite_batch(responses, prompts, [[t for t in ts if t in known] for ts in targets], checker)

    return revise
