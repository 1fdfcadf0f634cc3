"""Checks: does a response comply with a principle? One callable per check kind, built from settings.

Every check maps ``(texts, prompts)`` to a :class:`CheckOutcome` with, per text, a boolean
``violated``, the measured ``value`` and the evidence ``found`` (matched words or patterns, names the
dialogue never mentions). :class:`PrincipleChecker` runs every principle of a constitution.

Faithfulness measures (tokens: lower-cased words and numbers, possessive ``'s`` dropped):

- novel entities — capitalised words and numbers of the response, minus common function words, whose
  lower-cased form is not a token of the prompt (a plural ``s`` is ignored on either side);
- unigram precision (ROUGE-1 precision of the response against the prompt), with counts ``c``::

      P = Σ_w min(c_resp(w), c_prompt(w)) / Σ_w c_resp(w)          (P = 1 for an empty response)
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from detoxrl.config import Config, JudgeSettings
from detoxrl.constitution.critic import CriticModel
from detoxrl.constitution.principles import (
    CombinedCheck,
    Constitution,
    FaithfulnessCheck,
    JudgeCheck,
    LexiconCheck,
    PatternCheck,
    Principle,
    SelfCritiqueCheck,
)
from detoxrl.errors import ConfigError, DetoxError
from detoxrl.rewards.base import Judge, JudgeResult
from detoxrl.rewards.build import TESTBED_LEXICON, build_judge
from detoxrl.rewards.lexicon import LexiconJudge
from detoxrl.testbed.lexicon import build_lexicon


@dataclass
class CheckOutcome:
    """One check on ``B`` texts."""

    violated: Tensor  # bool [B]
    value: Tensor  # float [B]
    found: list[list[str]]

    @staticmethod
    def empty() -> CheckOutcome:
        return CheckOutcome(torch.zeros(0, dtype=torch.bool), torch.zeros(0), [])


JudgeCache = dict[str, JudgeResult]
"""Judge results already computed for exactly these texts (the reward's ``per_judge``)."""

Check = Callable[..., CheckOutcome]


# --------------------------------------------------------------------------------- faithfulness
_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*|\d+(?:[.:,]\d+)*")
COMMON_WORDS = frozenset("""
a an the this that these those there here then than when while after before because since until if
and but or so yet nor also too not no yes ok okay he she it they we you i his her its their our your
my him them us me mr mrs ms dr sir madam person both each every all some any one two three
""".split())


def _norm(word: str) -> str:
    w = word.lower().replace("’", "'")
    return w[:-2] if w.endswith("'s") else w.strip("'-")


def word_tokens(text: str) -> list[str]:
    """Lower-cased words and numbers of ``text`` (possessive ``'s`` dropped)."""
    return [t for t in (_norm(m.group()) for m in _WORD.finditer(text)) if t]


def novel_entities(response: str, prompt: str) -> list[str]:
    """Capitalised words and numbers of ``response`` that ``prompt`` never mentions, each once
    (``Drelkan`` is mentioned by ``Drelkans`` and the other way round)."""
    known = set(word_tokens(prompt))
    known |= {w[:-1] for w in known if len(w) > 3 and w.endswith("s")}
    out: list[str] = []
    for m in _WORD.finditer(response):
        raw = m.group()
        if not (raw[0].isupper() or raw[0].isdigit()):
            continue
        w = _norm(raw)
        singular = w[:-1] if len(w) > 3 and w.endswith("s") else w
        if w and w not in known and singular not in known and w not in COMMON_WORDS and raw not in out:
            out.append(raw)
    return out


def unigram_precision(response: str, prompt: str) -> float:
    """``Σ_w min(c_resp(w), c_prompt(w)) / Σ_w c_resp(w)``; 1 for a response without words."""
    resp = Counter(word_tokens(response))
    total = sum(resp.values())
    if total == 0:
        return 1.0
    ref = Counter(word_tokens(prompt))
    return sum(min(n, ref[w]) for w, n in resp.items()) / total


# ------------------------------------------------------------------------------------ the checks
class JudgeThresholdCheck:
    """``violated = measure >= threshold`` for one judge's toxicity, severity or dimension."""

    def __init__(self, judge: Judge, measure: str, threshold: float) -> None:
        self.judge, self.measure, self.threshold = judge, measure, float(threshold)

    def _value(self, r: JudgeResult) -> Tensor:
        if self.measure == "toxicity":
            return r.toxicity
        if self.measure == "severity":
            return r.severity
        return r.dimensions[self.measure]

    def __call__(self, texts: list[str], prompts: list[str], cache: JudgeCache | None = None) -> CheckOutcome:
        r = (cache or {}).get(self.judge.name)
        if r is None or len(r) != len(texts):
            r = self.judge.score(texts, prompts)
        v = self._value(r).float()
        return CheckOutcome(v >= self.threshold, v, [[] for _ in texts])


class LexiconMatchCheck:
    """``violated = #matched entries >= min_matches`` (entries of ``dimensions`` only, if given)."""

    def __init__(self, judge, dimensions: Sequence[str] = (), min_matches: int = 1) -> None:
        self.judge, self.dimensions, self.min_matches = judge, tuple(dimensions), min_matches

    def _matches(self, text: str) -> list[str]:
        found = self.judge.matches(text)
        if self.dimensions:
            found = [e for e in found if self.judge.lexicon.dimension_of.get(e) in self.dimensions]
        return found

    def __call__(self, texts: list[str], prompts: list[str], cache: JudgeCache | None = None) -> CheckOutcome:
        found = [self._matches(t) for t in texts]
        n = torch.tensor([float(len(f)) for f in found])
        return CheckOutcome(n >= self.min_matches, n, found)


class RegexCheck:
    """``violated`` when any pattern matches; ``value`` = number of matches."""

    def __init__(self, patterns: Sequence[str], ignore_case: bool = True) -> None:
        flags = re.IGNORECASE if ignore_case else 0
        self.patterns = [re.compile(p, flags) for p in patterns]

    def __call__(self, texts: list[str], prompts: list[str], cache: JudgeCache | None = None) -> CheckOutcome:
        found = [[m.group() for p in self.patterns for m in p.finditer(t)] for t in texts]
        n = torch.tensor([float(len(f)) for f in found])
        return CheckOutcome(n > 0, n, found)


class FaithfulnessTest:
    """Novel entities (``value`` = their number, violated above ``max_novel``) or unigram precision
    (``value`` = precision, violated below ``threshold``)."""

    def __init__(self, s: FaithfulnessCheck) -> None:
        self.s = s

    def __call__(self, texts: list[str], prompts: list[str], cache: JudgeCache | None = None) -> CheckOutcome:
        if self.s.method == "entities":
            found = [novel_entities(t, p) for t, p in zip(texts, prompts)]
            n = torch.tensor([float(len(f)) for f in found])
            return CheckOutcome(n > self.s.max_novel, n, found)
        prec = torch.tensor([unigram_precision(t, p) for t, p in zip(texts, prompts)])
        return CheckOutcome(prec < self.s.threshold, prec, [[] for _ in texts])


class SelfCritique:
    """The critic answers the principle's critique request; ``value`` = P(violation answer)."""

    def __init__(self, s: SelfCritiqueCheck, principle: Principle, constitution: Constitution,
                 critic: CriticModel) -> None:
        self.s, self.principle, self.constitution, self.critic = s, principle, constitution, critic
        self._ids: tuple[list[int], list[int]] | None = None

    def __call__(self, texts: list[str], prompts: list[str], cache: JudgeCache | None = None) -> CheckOutcome:
        if not texts:
            return CheckOutcome.empty()
        if self._ids is None:
            what = f"principle {self.principle.id}"
            self._ids = (self.critic.answer_ids(self.s.yes, what), self.critic.answer_ids(self.s.no, what))
        requests = [self.constitution.critique_prompt(self.principle, t, p, self.s.template)
                    for t, p in zip(texts, prompts)]
        p_yes = self.critic.p_yes(requests, *self._ids)
        p = p_yes if self.s.violation_answer == "yes" else 1 - p_yes
        return CheckOutcome(p >= self.s.threshold, p, [[] for _ in texts])


class Combined:
    """``all``: every nested check fires; ``any``: at least one. ``value`` = how many fired."""

    def __init__(self, kind: str, checks: Sequence[Check]) -> None:
        self.kind, self.checks = kind, list(checks)

    def __call__(self, texts: list[str], prompts: list[str], cache: JudgeCache | None = None) -> CheckOutcome:
        outs = [c(texts, prompts, cache=cache) for c in self.checks]
        fired = torch.stack([o.violated for o in outs], 0)
        violated = fired.all(0) if self.kind == "all" else fired.any(0)
        found = [[f for o in outs for f in o.found[i]] for i in range(len(texts))]
        return CheckOutcome(violated, fired.float().sum(0), found)


# ----------------------------------------------------------------------------------------- building
@dataclass
class CheckContext:
    """What checks are built from: the config (judges by name, run folder), built judges, the critic."""

    cfg: Config | None = None
    device: str | torch.device = "cpu"
    judges: dict[str, Judge] = field(default_factory=dict)
    critic: CriticModel | None = None
    constitution: Constitution | None = None
    _lexicons: dict[str, object] = field(default_factory=dict)

    def judge_settings(self) -> dict[str, JudgeSettings]:
        if self.cfg is None:
            return {}
        return {s.name: s for s in self.cfg.reward.judges + self.cfg.eval.extra_judges}

    def judge(self, ref: str | list[str] | JudgeSettings, where: str) -> Judge:
        """A built judge for a name, a list of alternative names, or inline settings."""
        if isinstance(ref, JudgeSettings):
            key = f"inline:{ref.model_dump_json()}"
            if key not in self.judges:
                self.judges[key] = build_judge(ref, self.cfg, self.device)
            return self.judges[key]
        names = [ref] if isinstance(ref, str) else list(ref)
        settings = self.judge_settings()
        for name in names:
            if name in self.judges:
                return self.judges[name]
            if name in settings:
                try:
                    self.judges[name] = build_judge(settings[name], self.cfg, self.device)
                except DetoxError as exc:
                    raise type(exc)(f"{where}: judge {name}: {exc}") from None
                return self.judges[name]
        known = sorted(set(self.judges) | set(settings))
        known = [k for k in known if not k.startswith("inline:")]
        raise ConfigError(f"{where}: judge {' / '.join(names)} is not in the config "
                          f"(reward.judges and eval.extra_judges have {known})")

    def lexicon(self, source: str, where: str):
        """A lexicon judge (its ``matches``) for a word-list source (see the principles docstring)."""
        if source in self._lexicons:
            return self._lexicons[source]
        name = f"constitution-lexicon:{source}"
        if source.startswith("testbed"):
            tier = source.partition(":")[2]
            run_file = self.cfg.path(TESTBED_LEXICON) if self.cfg is not None else None
            if not tier and run_file is not None and run_file.is_file():
                judge = LexiconJudge.from_source(name, str(run_file))
            else:
                lex = build_lexicon()
                pools = {"": lex.words, "insulting": lex.insulting, "profane": lex.profane}
                if tier not in pools:
                    raise ConfigError(f"{where}: unknown lexicon {source!r}; the testbed has "
                                      "testbed, testbed:insulting and testbed:profane")
                judge = LexiconJudge(name, pools[tier])
        else:
            path = self.cfg.resolve(source) if self.cfg is not None else source
            judge = LexiconJudge.from_source(name, path)
        self._lexicons[source] = judge
        return judge


def build_check(settings, principle: Principle, ctx: CheckContext) -> Check:
    """The callable for one check's settings (nested checks built recursively)."""
    where = f"constitution principle {principle.id}"
    if isinstance(settings, JudgeCheck):
        judge = ctx.judge(settings.judge, where)
        if settings.measure not in ("toxicity", "severity") and settings.measure not in judge.dimensions:
            raise ConfigError(f"{where}: judge {judge.name} does not report the dimension "
                              f"{settings.measure!r} (it reports {list(judge.dimensions)})")
        threshold = settings.threshold if settings.threshold is not None else judge.threshold
        return JudgeThresholdCheck(judge, settings.measure, threshold)
    if isinstance(settings, LexiconCheck):
        if settings.judge is not None:
            judge = ctx.judge(settings.judge, where)
            if not hasattr(judge, "matches"):
                raise ConfigError(f"{where}: judge {settings.judge} is not a lexicon judge")
        else:
            judge = ctx.lexicon(settings.lexicon, where)
        return LexiconMatchCheck(judge, settings.dimensions, settings.min_matches)
    if isinstance(settings, PatternCheck):
        return RegexCheck(settings.patterns, settings.ignore_case)
    if isinstance(settings, FaithfulnessCheck):
        return FaithfulnessTest(settings)
    if isinstance(settings, SelfCritiqueCheck):
        if ctx.critic is None:
            raise ConfigError(f"{where}: a self_critique check needs a model (the policy)")
        if ctx.constitution is None:
            raise ConfigError(f"{where}: a self_critique check needs its constitution")
        return SelfCritique(settings, principle, ctx.constitution, ctx.critic)
    if isinstance(settings, CombinedCheck):
        return Combined(settings.kind, [build_check(c, principle, ctx) for c in settings.checks])
    raise ConfigError(f"{where}: unknown check {settings!r}")  # pragma: no cover - validated


# ------------------------------------------------------------------------------ all the principles
@dataclass
class Verdicts:
    """Every principle checked on ``B`` texts (dicts keyed by principle id, in constitution order)."""

    violations: dict[str, Tensor]  # bool [B]
    values: dict[str, Tensor]  # float [B]
    found: dict[str, list[list[str]]]

    def __len__(self) -> int:
        return int(next(iter(self.violations.values())).shape[0]) if self.violations else 0

    def violated_ids(self, i: int) -> list[str]:
        return [pid for pid, v in self.violations.items() if bool(v[i])]

    def count(self) -> Tensor:
        """Number of violated principles per text."""
        n = len(self)
        return sum((v.float() for v in self.violations.values()), torch.zeros(n))

    def weighted(self, weights: dict[str, float]) -> Tensor:
        """``Σ_p w_p · violated_p`` per text."""
        n = len(self)
        return sum((weights[p] * v.float() for p, v in self.violations.items()), torch.zeros(n))


class PrincipleChecker:
    """Checks every principle of a constitution on a batch of responses."""

    def __init__(self, constitution: Constitution, ctx: CheckContext) -> None:
        ctx.constitution = constitution
        self.constitution = constitution
        self.ctx = ctx
        self.checks: dict[str, Check] = {p.id: build_check(p.check, p, ctx) for p in constitution.principles}
        self.weights = {p.id: float(p.weight) for p in constitution.principles}

    def evaluate(self, texts: Sequence[str], prompts: Sequence[str], cache: JudgeCache | None = None,
                 only: Sequence[str] | None = None) -> Verdicts:
        """Verdicts of every principle (or of the ids in ``only``) on ``texts``."""
        texts, prompts = list(texts), list(prompts)
        if len(texts) != len(prompts):
            raise ValueError(f"{len(texts)} responses but {len(prompts)} prompts")
        ids = list(only) if only is not None else list(self.checks)
        viol, vals, found = {}, {}, {}
        for pid in ids:
            out = self.checks[pid](texts, prompts, cache=cache) if texts else CheckOutcome.empty()
            viol[pid], vals[pid], found[pid] = out.violated.bool().cpu(), out.value.float().cpu(), out.found
        return Verdicts(viol, vals, found)
