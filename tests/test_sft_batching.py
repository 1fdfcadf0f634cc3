"""``sft.group_by_length``: the batches of one epoch cover every row once, in random order, with rows of
about the same length together (less padding than random batches)."""

from __future__ import annotations

import random

import torch

from detoxrl.stages.sft import length_grouped_batches


def test_small_case_by_hand():
    # Six rows, batch 2, megabatch 3 (all six rows in one run): sorted longest first by (prompt, target),
    # the runs are [3, 5], [1, 4], [0, 2]; only their order is random.
    lengths = [(5, 1), (9, 2), (4, 9), (20, 3), (9, 1), (20, 4)]
    batches = length_grouped_batches(lengths, 2, torch.Generator().manual_seed(0), megabatch=3)
    assert sorted(map(sorted, batches)) == [[0, 2], [1, 4], [3, 5]]
    for b in batches:  # longest first inside a batch
        assert [lengths[i] for i in b] == sorted((lengths[i] for i in b), reverse=True)


def test_every_row_once_and_less_padding():
    rng = random.Random(1)
    lengths = [(rng.randint(20, 74), rng.randint(5, 45)) for _ in range(1000)]
    g = torch.Generator().manual_seed(3)
    batches = length_grouped_batches(lengths, 32, g)  # one run of 1,000 rows
    rows = [i for b in batches for i in b]
    assert sorted(rows) == list(range(1000))
    assert all(1 <= len(b) <= 32 for b in batches)

    def padded(bs):
        return sum(len(b) * max(lengths[i][0] for i in b) for b in bs)

    perm = torch.randperm(1000, generator=torch.Generator().manual_seed(3)).tolist()
    random_batches = [perm[i: i + 32] for i in range(0, 1000, 32)]
    real = sum(p for p, _ in lengths)
    assert padded(random_batches) / real > 1.3  # random batches of lengths 20-74 pad about 40%
    assert padded(batches) / real < 1.02


def test_batch_order_is_random_and_seeded():
    lengths = [(i % 50, 1) for i in range(640)]
    a = length_grouped_batches(lengths, 32, torch.Generator().manual_seed(0), megabatch=20)
    b = length_grouped_batches(lengths, 32, torch.Generator().manual_seed(0), megabatch=20)
    c = length_grouped_batches(lengths, 32, torch.Generator().manual_seed(1), megabatch=20)
    assert a == b and a != c
    firsts = [lengths[bt[0]][0] for bt in a]
    assert firsts != sorted(firsts, reverse=True)  # not long-to-short across the epoch
