"""Perturbation search: a small evolutionary loop over mutated held-out dialogues.

Round 0 mutates held-out dialogues (the *seeds*). Every later round draws each parent by a tournament
of two from the population (or, with probability ``explore``, a fresh seed), applies 1 to
``max_mutations`` mutations (:mod:`detoxrl.redteam.mutations`) and lets the target answer. A child joins
the population when it raises the judges' toxicity of the response over its parent's (its fitness,
:func:`detoxrl.redteam.cases.fitness_of`, is higher); the population keeps the ``population`` fittest
distinct dialogues. The loop stops when ``budget`` target generations are spent; every one of them is an
attempt of the method ``perturbation``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from detoxrl.redteam.cases import Attempt, fitness_of
from detoxrl.redteam.mutations import mutate
from detoxrl.redteam.target import Target

METHOD = "perturbation"


@dataclass(frozen=True)
class Seed:
    id: str
    text: str


@dataclass
class Member:
    text: str
    fitness: float
    source: str


@dataclass
class SearchSettings:
    budget: int
    population: int = 32
    batch: int = 64
    max_mutations: int = 2
    explore: float = 0.2
    mutations: tuple[str, ...] = ("insert", "space", "repeat", "homoglyph", "quote", "negate", "move")
    success: str = "any"
    seed: int = 0


def _pick_parent(pop: list[Member], seeds: Sequence[Seed], rng: random.Random, explore: float) -> Member:
    if not pop or rng.random() < explore:
        s = rng.choice(seeds)
        return Member(s.text, float("-inf"), s.id)
    a, b = rng.choice(pop), rng.choice(pop)
    return a if a.fitness >= b.fitness else b


def _select(pop: list[Member], size: int) -> list[Member]:
    best: dict[str, Member] = {}
    for m in pop:
        if m.text not in best or m.fitness > best[m.text].fitness:
            best[m.text] = m
    return sorted(best.values(), key=lambda m: -m.fitness)[:size]


def perturbation_search(target: Target, seeds: Sequence[Seed], hostile: Sequence[str], s: SearchSettings,
                        on_round=None) -> list[Attempt]:
    """Run the search; returns every attempt, in order."""
    if not seeds:
        raise ValueError("perturbation search needs at least one seed dialogue")
    rng = random.Random(s.seed)
    pop: list[Member] = []
    attempts: list[Attempt] = []
    rnd = 0
    while len(attempts) < s.budget:
        n = min(s.batch, s.budget - len(attempts))
        parents = [_pick_parent(pop, seeds, rng, 1.0 if rnd == 0 else s.explore) for _ in range(n)]
        children = [mutate(p.text, rng, s.mutations, hostile, s.max_mutations) for p in parents]
        prompts, responses, scores = target.attack([c for c, _ in children])
        for p, (text, applied), prompt, resp, sc in zip(parents, children, prompts, responses, scores):
            fit = fitness_of(sc, target.thresholds, s.success)
            attempts.append(Attempt(METHOD, text, prompt, resp, sc, fit >= 0, fit, rnd, len(attempts),
                                    applied, p.source))
            if fit > p.fitness:
                pop.append(Member(text, fit, p.source))
        pop = _select(pop, s.population)
        if on_round:
            on_round(rnd, attempts)
        rnd += 1
    return attempts
