"""The data of ``train-rm``: rankings become preference pairs, labels become class ids, texts become
token ids in length-bucketed batches.

- :func:`rankings_to_pairs`: rows ``{"prompt", "completions": [...], "ranks": [...]}`` (1 = best, ties
  allowed) → every ``(prompt, better, worse)`` pair of completions with different ranks, refusing
  contradictory rankings (a cycle of preferences for one prompt) with the rows that make it.
- :func:`label_ids`: label names or indices → class ids of ``train_rm.labels``.
- :func:`encode`, :func:`collate`, :func:`bucketed_batches`: tokenise once, pad per batch, batch rows
  of similar length together (seeded).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from detoxrl.errors import DataError
from detoxrl.rewards.judge_eval import POSITIVE_LABELS


class Pair(NamedTuple):
    prompt: str
    chosen: str
    rejected: str


def _rank_value(v, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise DataError(f"{where}: rank {v!r} is not a number")
    try:
        x = float(v)
    except ValueError:
        raise DataError(f"{where}: rank {v!r} is not a number") from None
    if not math.isfinite(x):
        raise DataError(f"{where}: rank {v!r} is not a finite number")
    return x


def rankings_to_pairs(rows: Sequence[dict], source: str = "<rankings>") -> list[Pair]:
    """Every ``(prompt, better, worse)`` pair of completions with different ranks (1 = best).

    Tied completions make no pair; a row with one completion makes none. A row whose ``completions``
    and ``ranks`` are not lists of equal length, or whose ranks are not numbers, raises
    :class:`DataError` naming ``source`` and the row (its ``_row`` key if present, else its position).
    Rows of the same prompt must agree: preferences that form a cycle across them (``a > b`` in one
    row, ``b > a`` in another, or ``a > b > c > a``) are refused, naming the rows.
    """
    pairs: list[Pair] = []
    pair_rows: list[str] = []
    for k, row in enumerate(rows, 1):
        label = f"row {row.get('_row', k) if isinstance(row, dict) else k}"
        where = f"{source} {label}"
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected an object with prompt, completions and ranks")
        comps, ranks = row.get("completions"), row.get("ranks")
        if not isinstance(comps, list) or not isinstance(ranks, list):
            raise DataError(f"{where}: `completions` and `ranks` must both be lists")
        if len(comps) != len(ranks):
            raise DataError(f"{where}: {len(comps)} completions but {len(ranks)} ranks")
        values = [_rank_value(r, where) for r in ranks]
        seen: dict[str, float] = {}
        for comp, value in zip(comps, values):
            key = str(comp)
            if key in seen and seen[key] != value:
                raise DataError(f"{where}: the same completion is ranked both {seen[key]:g} and {value:g} "
                                "(a contradictory ranking: it would be preferred to itself)")
            seen[key] = value
        prompt = str(row.get("prompt") or "")
        for i in range(len(comps)):
            for j in range(i + 1, len(comps)):
                if values[i] == values[j]:
                    continue
                better, worse = (i, j) if values[i] < values[j] else (j, i)
                pairs.append(Pair(prompt, str(comps[better]), str(comps[worse])))
                pair_rows.append(label)
    _refuse_cycles(pairs, pair_rows, source)
    return pairs


def _refuse_cycles(pairs: Sequence[Pair], pair_rows: Sequence[str], source: str) -> None:
    """Raise :class:`DataError` if the preferences of one prompt contain a cycle.

    Per prompt, "chosen beats rejected" is an edge of a directed graph; a ranking that humans could
    have given is acyclic. Kahn's algorithm removes completions that nothing beats; whatever is left
    lies on or behind a cycle, and one cycle is walked out of it for the message.
    """
    graphs: dict[str, dict[str, dict[str, str]]] = {}
    for pair, where in zip(pairs, pair_rows):
        graphs.setdefault(pair.prompt, {}).setdefault(pair.chosen, {}).setdefault(pair.rejected, where)
    for prompt, edges in graphs.items():
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
        stuck = {n for n, d in indegree.items() if d > 0}
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
        raise DataError(f"{source} {', '.join(rows)}: contradictory rankings for prompt {prompt[:60]!r}: "
                        f"{chain} is a preference cycle")


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
