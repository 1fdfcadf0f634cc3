"""Self-revision: make a response that violates principles comply, in one of three ways.

- ``rewrite`` (rule-based): split the response into sentences; each sentence that violates one of
  the response's violated principles on its own is split into clauses (at ``, ; :``) and the
  offending clauses are removed; if what is left still violates (or nothing is left), the whole
  sentence goes. A violation that no single sentence shows is left alone. When a response violates
  several principles and removing every offending piece would leave nothing (an insult after a
  summary that also breaks ``faithful``, say), each violated principle is rewritten for alone and the
  best non-empty result is kept.
- ``resample``: sample a fresh response to the same prompt, up to ``k`` times, and keep the sample
  with the fewest (weighted) violations.
- ``policy``: the critic model (by default the policy itself) answers each violated principle's
  revision request in turn, in constitution order (Constitutional AI's critique → revision loop).

A revision is *accepted* when it is non-empty, differs from the original and is strictly better by
``(Σ_p w_p · violated_p, number of violated principles)`` compared lexicographically; only accepted
revisions become preference and SFT data.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from detoxrl.config import GenerationSettings
from detoxrl.constitution.checks import PrincipleChecker, Verdicts
from detoxrl.constitution.critic import CriticModel
from detoxrl.errors import ConfigError

MODES = ("none", "policy", "resample", "rewrite")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_CLAUSE_SEP = re.compile(r"\s*(?:,(?!\d)|;|:(?=\s))\s*")
_LEADING_CONJ = re.compile(r"^(?:and|but|or|so|then|because|while)\s+", re.IGNORECASE)


@dataclass
class Revision:
    """One response that violated principles, and what the reviser made of it."""

    index: int
    prompt: str
    original: str
    revised: str
    violated: list[str]
    remaining: list[str]
    mode: str
    accepted: bool
    meta: dict = field(default_factory=dict)

    @property
    def fixed(self) -> list[str]:
        return [p for p in self.violated if p not in self.remaining]


# ------------------------------------------------------------------------------- rule-based rewrite
def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``, split after ``. ! ?`` followed by white space."""
    text = text.strip()
    return [s for s in _SENTENCE_END.split(text) if s.strip()] if text else []


def split_clauses(sentence: str) -> tuple[list[str], str]:
    """``(clauses, end)``: the sentence without its final ``. ! ?`` split at ``, ; :`` (a comma
    inside a number and a colon inside a time stay)."""
    s = sentence.strip()
    end = s[-1] if s and s[-1] in ".!?" else ""
    body = s[:-1] if end else s
    return [c for c in _CLAUSE_SEP.split(body) if c.strip()], end


def join_clauses(clauses: Sequence[str], end: str, capitalise: bool) -> str:
    """Rebuild a sentence from kept clauses: a leading conjunction goes, the first letter is
    capitalised if the original sentence was."""
    if not clauses:
        return ""
    first = _LEADING_CONJ.sub("", clauses[0].strip())
    if capitalise and first[:1].islower():
        first = first[0].upper() + first[1:]
    body = ", ".join([first, *[c.strip() for c in clauses[1:]]]).strip(" ,")
    return (body + end) if body else ""


def _flags(checker: PrincipleChecker, pieces: list[str], prompts: list[str],
           targets: list[Sequence[str]]) -> list[bool]:
    """Per piece: does it violate one of its own target principles?"""
    if not pieces:
        return []
    ids = sorted({p for t in targets for p in t}, key=list(checker.checks).index)
    v = checker.evaluate(pieces, prompts, only=ids)
    return [any(bool(v.violations[p][k]) for p in t) for k, t in enumerate(targets)]


def rewrite_batch(texts: Sequence[str], prompts: Sequence[str], targets: Sequence[Sequence[str]],
                  checker: PrincipleChecker) -> list[str]:
    """Remove the clauses (else sentences) of each text that violate its ``targets`` (module doc)."""
    sents = [split_sentences(t) for t in texts]
    flat = [(i, j) for i, ss in enumerate(sents) for j in range(len(ss))]
    bad = _flags(checker, [sents[i][j] for i, j in flat], [prompts[i] for i, _ in flat],
                 [targets[i] for i, _ in flat])
    flagged = [(i, j) for (i, j), b in zip(flat, bad) if b]
    # clauses of flagged sentences
    parts = {(i, j): split_clauses(sents[i][j]) for i, j in flagged}
    cflat = [(i, j, k) for (i, j), (cl, _) in parts.items() if len(cl) > 1 for k in range(len(cl))]
    cbad = _flags(checker, [parts[(i, j)][0][k] for i, j, k in cflat], [prompts[i] for i, _, _ in cflat],
                  [targets[i] for i, _, _ in cflat])
    dropped = {(i, j, k) for (i, j, k), b in zip(cflat, cbad) if b}
    rebuilt: dict[tuple[int, int], str] = {}
    for (i, j), (cl, end) in parts.items():
        keep = [c for k, c in enumerate(cl) if (i, j, k) not in dropped]
        if len(cl) > 1 and 0 < len(keep) < len(cl):
            rebuilt[(i, j)] = join_clauses(keep, end, sents[i][j][:1].isupper())
    # a rebuilt sentence must itself comply, else the whole sentence goes
    keys = [k for k, s in rebuilt.items() if s]
    still = _flags(checker, [rebuilt[k] for k in keys], [prompts[i] for i, _ in keys], [targets[i] for i, _ in keys])
    final = {k: ("" if b else rebuilt[k]) for k, b in zip(keys, still)}
    out = []
    for i, ss in enumerate(sents):
        kept = []
        for j, s in enumerate(ss):
            if (i, j) not in parts:
                kept.append(s)
            elif final.get((i, j)):
                kept.append(final[(i, j)])
        out.append(" ".join(kept))
    return out


# --------------------------------------------------------------------------------------- reviser
def _key(v: Verdicts, weights: dict[str, float], i: int) -> tuple[float, int]:
    return (round(float(v.weighted(weights)[i]), 9), int(v.count()[i]))


class Reviser:
    """Turns violating responses into revisions with the configured mode (module docstring)."""

    def __init__(self, mode: str, checker: PrincipleChecker, critic: CriticModel | None = None, *,
                 generation: GenerationSettings | None = None, max_resamples: int = 2,
                 max_new_tokens: int | None = None, seed: int = 0) -> None:
        if mode not in MODES:
            raise ConfigError(f"constitution.revision: unknown mode {mode!r}; modes are {list(MODES)}")
        if mode in ("policy", "resample") and critic is None:
            raise ConfigError(f"constitution.revision {mode!r} needs a model (the policy)")
        self.mode, self.checker, self.critic = mode, checker, critic
        self.generation = generation or GenerationSettings()
        self.max_resamples = max_resamples
        self.max_new_tokens = max_new_tokens
        self.seed = seed
        self.calls = 0
        self.revisable = {p.id for p in checker.constitution.principles if p.revise}

    def targets(self, verdicts: Verdicts) -> list[list[str]]:
        """Per text: the violated principles that ask for a revision."""
        return [[p for p in verdicts.violated_ids(i) if p in self.revisable] for i in range(len(verdicts))]

    def revise(self, texts: Sequence[str], prompts: Sequence[str], verdicts: Verdicts) -> list[Revision]:
        """A :class:`Revision` for every text with a revisable violation (none in mode ``none``)."""
        if self.mode == "none":
            return []
        self.calls += 1
        targets = self.targets(verdicts)
        rows = [i for i, t in enumerate(targets) if t]
        if not rows:
            return []
        sub_texts = [texts[i] for i in rows]
        sub_prompts = [prompts[i] for i in rows]
        sub_targets = [targets[i] for i in rows]
        weights = self.checker.weights
        before = [_key(verdicts, weights, i) for i in rows]
        meta: list[dict] = [{} for _ in rows]
        if self.mode == "rewrite":
            cand = rewrite_batch(sub_texts, sub_prompts, sub_targets, self.checker)
            self._rewrite_one_principle_at_a_time(cand, sub_texts, sub_prompts, sub_targets)
        elif self.mode == "policy":
            cand = self._policy(sub_texts, sub_prompts, sub_targets)
        else:
            cand, meta = self._resample(sub_texts, sub_prompts, before)
        after = self.checker.evaluate(cand, sub_prompts)
        out = []
        for k, i in enumerate(rows):
            revised = cand[k].strip()
            ok = bool(revised) and revised != texts[i].strip() and _key(after, weights, k) < before[k]
            out.append(Revision(index=i, prompt=prompts[i], original=texts[i], revised=revised,
                                violated=verdicts.violated_ids(i), remaining=after.violated_ids(k),
                                mode=self.mode, accepted=ok, meta=meta[k]))
        return out

    def _rewrite_one_principle_at_a_time(self, cand: list[str], texts: list[str], prompts: list[str],
                                         targets: list[list[str]]) -> None:
        """Where the rewrite for all targets left nothing, rewrite for each target alone and keep the
        best non-empty candidate (in place; candidates are ranked like revisions, by :func:`_key`)."""
        todo = [(k, p) for k, c in enumerate(cand) if not c.strip() and len(targets[k]) > 1 for p in targets[k]]
        if not todo:
            return
        alt = rewrite_batch([texts[k] for k, _ in todo], [prompts[k] for k, _ in todo], [[p] for _, p in todo],
                            self.checker)
        verdicts = self.checker.evaluate(alt, [prompts[k] for k, _ in todo])
        best: dict[int, tuple[tuple[float, int], str]] = {}
        for n, (k, _) in enumerate(todo):
            key = _key(verdicts, self.checker.weights, n)
            if alt[n].strip() and (k not in best or key < best[k][0]):
                best[k] = (key, alt[n])
        for k, (_, text) in best.items():
            cand[k] = text

    def _gen(self, do_sample: bool) -> GenerationSettings:
        return self.generation.model_copy(update={"do_sample": do_sample})

    def _policy(self, texts: list[str], prompts: list[str], targets: list[list[str]]) -> list[str]:
        """Each violated principle's revision request in turn, answered greedily by the critic."""
        current = list(texts)
        const = self.checker.constitution
        for p in const.principles:
            rows = [k for k, t in enumerate(targets) if p.id in t]
            if not rows:
                continue
            still = self.checker.evaluate([current[k] for k in rows], [prompts[k] for k in rows], only=[p.id])
            rows = [k for n, k in enumerate(rows) if bool(still.violations[p.id][n])]
            if not rows:
                continue
            requests = [const.revision_prompt(p, current[k], prompts[k]) for k in rows]
            answers = self.critic.generate(requests, self._gen(False), max_new_tokens=self.max_new_tokens)
            for k, a in zip(rows, answers):
                if a.strip():
                    current[k] = a.strip()
        return current

    def _resample(self, texts: list[str], prompts: list[str], before: list[tuple[float, int]]):
        """Up to ``max_resamples`` fresh samples per prompt; the best one (fewest violations) wins."""
        best = list(texts)
        best_key = list(before)
        tries = [0] * len(texts)
        open_rows = list(range(len(texts)))
        weights = self.checker.weights
        for attempt in range(self.max_resamples):
            if not open_rows:
                break
            seed = self.seed * 1_000_003 + self.calls * 1_009 + attempt
            samples = self.critic.generate([prompts[k] for k in open_rows], self._gen(True), seed=seed,
                                           max_new_tokens=self.max_new_tokens)
            v = self.checker.evaluate(samples, [prompts[k] for k in open_rows])
            for n, k in enumerate(open_rows):
                tries[k] += 1
                key = _key(v, weights, n)
                if key < best_key[k] and samples[n].strip():
                    best[k], best_key[k] = samples[n], key
            open_rows = [k for k in open_rows if best_key[k][1] > 0]
        return best, [{"samples": t} for t in tries]
