"""The data of ``train-rm``: rankings become preference pairs, labels become class ids, texts become
token ids in length-bucketed batches.

- :func:`rankings_to_pairs`, :func:`pairs_of`: rows of the rankings format (:mod:`detoxrl.data.rankings`:
  1 = best, ties allowed, special labels) → every ``(prompt, better, worse)`` pair of completions with
  different ranks, refusing contradictory rankings (a cycle of one labeller's preferences for one
  prompt) with the rows that make it; :func:`rankings_summary`: what a file held (special labels
  counted, pairs, ties, labellers' agreement); :func:`split_by_item`: a held-out share of the items.
- :func:`label_ids`: label names or indices → class ids of ``train_rm.labels``.
- :func:`encode`, :func:`collate`, :func:`bucketed_batches`: tokenise once, pad per batch, batch rows
  of similar length together (seeded).
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from detoxrl.data.agreement import rankings_agreement
from detoxrl.data.rankings import SPECIAL_LABELS, Ranking, parse_rankings
from detoxrl.errors import DataError
from detoxrl.rewards.judge_eval import POSITIVE_LABELS


class Pair(NamedTuple):
    prompt: str
    chosen: str
    rejected: str


def rankings_to_pairs(rows: Sequence[dict], source: str = "<rankings>",
                      specials: Collection[str] = SPECIAL_LABELS) -> list[Pair]:
    """Every ``(prompt, better, worse)`` pair of completions with different ranks (1 = best).

    Rows are checked as :mod:`detoxrl.data.rankings` describes (a bad row raises :class:`DataError`
    naming ``source`` and the row: its ``_row`` key if present, else its position); then
    :func:`pairs_of` makes the pairs.
    """
    return pairs_of(parse_rankings(rows, source, specials), source)


def pairs_of(rankings: Sequence[Ranking], source: str = "<rankings>") -> list[Pair]:
    """The preference pairs of checked rankings.

    Tied completions make no pair, nor does a row with one completion or a special label (``skip``,
    ``all_unusable``, ...). Several labellers' rankings of the same item are all used, each giving its
    own pairs (so labellers who disagree give opposite pairs). One labeller's rankings of one prompt
    must agree: preferences that form a cycle across their rows (``a > b`` in one row, ``b > a`` in
    another, or ``a > b > c > a``) are refused, naming the rows. Rows of the earlier format (no
    ``labeller``) count as one labeller.
    """
    pairs: list[Pair] = []
    pair_rows: list[tuple[str | None, str]] = []
    for r in rankings:
        if r.ranks is None:
            continue
        for i in range(len(r.completions)):
            for j in range(i + 1, len(r.completions)):
                if r.ranks[i] == r.ranks[j]:
                    continue
                better, worse = (i, j) if r.ranks[i] < r.ranks[j] else (j, i)
                pairs.append(Pair(r.prompt, r.completions[better], r.completions[worse]))
                pair_rows.append((r.labeller, r.row))
    _refuse_cycles(pairs, pair_rows, source)
    return pairs


def tied_pairs(rankings: Sequence[Ranking]) -> int:
    """How many pairs of completions the rankings tie (pairs that :func:`pairs_of` does not make)."""
    n = 0
    for r in rankings:
        if r.ranks is not None:
            n += sum(r.ranks[i] == r.ranks[j] for i in range(len(r.ranks)) for j in range(i + 1, len(r.ranks)))
    return n


def rankings_summary(rankings: Sequence[Ranking], n_pairs: int) -> dict:
    """What a rankings file held: rows, ranked rows, special labels by name (excluded from training,
    not an error), pairs made, tied pairs, labellers, distinct items, and the labellers' agreement
    (:func:`detoxrl.data.agreement.rankings_agreement`)."""
    specials: dict[str, int] = {}
    for r in rankings:
        if r.special is not None:
            specials[r.special] = specials.get(r.special, 0) + 1
    return {"rows": len(rankings), "ranked": sum(r.ranks is not None for r in rankings),
            "special": dict(sorted(specials.items())), "pairs": n_pairs, "tied_pairs": tied_pairs(rankings),
            "labellers": len({r.labeller for r in rankings if r.labeller is not None}),
            "items": len({r.item for r in rankings}), "agreement": rankings_agreement(rankings)}


def format_rankings_summary(summary: dict) -> str:
    """One line: ``120 rows → 300 pairs (40 tied pairs make none); excluded: skip 3; 3 labellers, 12 items
    ranked by several: Kendall τ-b 0.61, Krippendorff α 0.58``."""
    line = f"{summary['rows']} rows → {summary['pairs']} pairs ({summary['tied_pairs']} tied pairs make none)"
    if summary["special"]:
        line += "; excluded: " + ", ".join(f"{k} {v}" for k, v in summary["special"].items())
    agree = summary["agreement"]
    if agree["items"]:
        tau, alpha = agree["kendall_tau_b"], agree["krippendorff_alpha_ordinal"]
        line += (f"; {summary['labellers']} labellers, {agree['items']} items ranked by several: "
                 f"Kendall τ-b {'n/a' if tau is None else f'{tau:.2f}'}, "
                 f"Krippendorff α {'n/a' if alpha is None else f'{alpha:.2f}'}")
    return line


def split_by_item(rankings: Sequence[Ranking], share: float, seed: int) -> tuple[list[Ranking], list[Ranking]]:
    """Hold out a seeded ``share`` of the items (every labeller's rankings of an item on the same side,
    so no held-out pair was seen in training): :func:`split_heldout` over the distinct items."""
    items = list(dict.fromkeys(r.item for r in rankings))
    train_items, _ = split_heldout(items, share, seed)
    keep = set(train_items)
    return [r for r in rankings if r.item in keep], [r for r in rankings if r.item not in keep]


def _refuse_cycles(pairs: Sequence[Pair], pair_rows: Sequence[tuple[str | None, str]], source: str) -> None:
    """Raise :class:`DataError` if one labeller's preferences for one prompt contain a cycle.

    Per labeller and prompt, "chosen beats rejected" is an edge of a directed graph; a ranking that a
    person could have given is acyclic. Kahn's algorithm removes completions that nothing beats;
    whatever is left lies on or behind a cycle, and one cycle is walked out of it for the message.
    """
    graphs: dict[tuple[str | None, str], dict[str, dict[str, str]]] = {}
    for pair, (labeller, where) in zip(pairs, pair_rows):
        graph = graphs.setdefault((labeller, pair.prompt), {})
        graph.setdefault(pair.chosen, {}).setdefault(pair.rejected, where)
    for (labeller, prompt), edges in graphs.items():
        stuck = _on_cycles(edges)
        if not stuck:
            continue
        # every stuck node is beaten by a stuck node: walk backwards until a node repeats
        beaten_by = {b: a for a, outs in edges.items() if a in stuck for b in outs if b in stuck}
        path, node = [], next(iter(sorted(stuck)))
        while node not in path:
            path.append(node)
            node = beaten_by[node]
        cycle = path[path.index(node):][::-1]
        steps = list(zip(cycle, cycle[1:] + cycle[:1]))
        chain = " > ".join(repr(c[:40]) for c in cycle + cycle[:1])
        rows = sorted({edges[a][b] for a, b in steps}, key=lambda r: (len(r), r))
        by = f" by labeller {labeller!r}" if labeller is not None else ""
        raise DataError(f"{source} {', '.join(rows)}: contradictory rankings{by} for prompt {prompt[:60]!r}: "
                        f"{chain} is a preference cycle")


def _on_cycles(edges: dict[str, dict[str, str]]) -> set[str]:
    """The nodes Kahn's algorithm cannot remove (on or behind a cycle)."""
    indegree: dict[str, int] = {}
    for a, outs in edges.items():
        indegree.setdefault(a, 0)
        for b in outs:
            indegree[b] = indegree.get(b, 0) + 1
    free = [n for n, d in indegree.items() if d == 0]
    while free:
        n = free.pop()
        for b in edges.get(n, {}):
            indegree[b] -= 1
            if indegree[b] == 0:
                free.append(b)
    return {n for n, d in indegree.items() if d > 0}


def label_ids(values: Sequence, labels: Sequence[str], rows: Sequence[dict], source: str) -> list[int]:
    """Map label values (names, or indices 0..K−1) to class ids; DataError naming the first bad row."""
    lookup = {name: i for i, name in enumerate(labels)}
    lookup.update({name.lower(): i for i, name in enumerate(labels)})
    out = []
    for v, row in zip(values, rows):
        key = str(v).strip()
        if isinstance(v, bool):
            key = str(int(v))
        elif isinstance(v, float) and v.is_integer():
            key = str(int(v))
        if key in lookup or key.lower() in lookup:
            out.append(lookup.get(key, lookup.get(key.lower())))
        elif key.isdigit() and int(key) < len(labels):
            out.append(int(key))
        else:
            raise DataError(f"{source} row {row.get('_row', '?')}: label {v!r} is not one of {list(labels)} "
                            f"(or an index 0..{len(labels) - 1})")
    return out


_BINARY = {"0": 0.0, "1": 1.0, "false": 0.0, "true": 1.0, "0.0": 0.0, "1.0": 1.0}


def multilabel_targets(rows: Sequence[dict], labels: Sequence[str], source: str) -> list[list[float]]:
    """Per row, one 0/1 target per label from the label's own column (the Jigsaw/toxic-bert layout:
    ``text, toxic, severe_toxic, ...``); DataError naming the first row with a missing or non-binary value."""
    out = []
    for row in rows:
        target = []
        for lab in labels:
            if lab not in row or row[lab] is None:
                cols = sorted(k for k in row if k != "_row")
                raise DataError(f"{source} row {row.get('_row', '?')}: no column {lab!r} (multilabel mode needs a "
                                f"0/1 column per label of train_rm.labels; columns: {cols})")
            v = row[lab]
            key = str(int(v)) if isinstance(v, bool) else str(v).strip().lower()
            if key not in _BINARY:
                raise DataError(f"{source} row {row.get('_row', '?')}: column {lab!r} is {v!r}, not 0 or 1")
            target.append(_BINARY[key])
        out.append(target)
    return out


def positive_index(labels: Sequence[str]) -> int | None:
    """The toxic class for F1/AUC: a label named like hate/toxic/1/true, else class 1 of two."""
    for i, name in enumerate(labels):
        if name.lower() in POSITIVE_LABELS:
            return i
    return 1 if len(labels) == 2 else None


# ---------------------------------------------------------------------------------------- batching
def encode(tokenizer, texts: Sequence[str], max_length: int, pairs: Sequence[str] | None = None) -> list[dict]:
    """Tokenise once (no padding); ``pairs`` are first segments (prompts) for (prompt, text) inputs."""
    if pairs is not None:
        enc = tokenizer(list(pairs), list(texts), truncation="longest_first", max_length=max_length)
    else:
        enc = tokenizer(list(texts), truncation=True, max_length=max_length)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
    return [{k: enc[k][i] for k in keys} for i in range(len(texts))]


def collate(features: Sequence[dict], pad_id: int, fill_id: int) -> dict[str, Tensor]:
    """Right-pad a batch; an empty sequence gets one ``fill_id`` token so no row is all padding."""
    length = max(1, max(len(f["input_ids"]) for f in features))
    ids = torch.full((len(features), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(features), length), dtype=torch.long)
    types = torch.zeros((len(features), length), dtype=torch.long) if "token_type_ids" in features[0] else None
    for i, f in enumerate(features):
        n = len(f["input_ids"])
        if n == 0:
            ids[i, 0], mask[i, 0] = fill_id, 1
            continue
        ids[i, :n] = torch.tensor(f["input_ids"])
        mask[i, :n] = 1
        if types is not None:
            types[i, :n] = torch.tensor(f["token_type_ids"])
    out = {"input_ids": ids, "attention_mask": mask}
    if types is not None:
        out["token_type_ids"] = types
    return out


def bucketed_batches(lengths: Sequence[int], batch_size: int, generator: torch.Generator,
                     bucket: int = 4) -> list[list[int]]:
    """One epoch of batches with little padding: shuffle, sort each run of ``bucket`` batches' worth
    of rows by length, cut into batches, shuffle the batches. Seeded by ``generator``."""
    perm = torch.randperm(len(lengths), generator=generator).tolist()
    batches = []
    span = batch_size * bucket
    for k in range(0, len(perm), span):
        chunk = sorted(perm[k : k + span], key=lambda i: lengths[i])
        batches += [chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size)]
    order = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in order]


def split_heldout(items: list, share: float, seed: int) -> tuple[list, list]:
    """Seeded shuffle, then the last ``share`` (at least one item) is held out."""
    items = list(items)
    random.Random(seed).shuffle(items)
    n_eval = max(1, int(round(len(items) * share)))
    if len(items) - n_eval < 1:
        raise DataError(f"only {len(items)} rows: too few to hold some out for evaluation")
    return items[:-n_eval], items[-n_eval:]


def pad_fill_ids(tokenizer) -> tuple[int, int]:
    pad = int(tokenizer.pad_token_id)
    return pad, int(tokenizer.unk_token_id if tokenizer.unk_token_id is not None else pad)


def item_length(item) -> int:
    first = item[0]
    return len(first["input_ids"]) + (len(item[1]["input_ids"]) if isinstance(item[1], dict) else 0)
