"""Property-based fuzzing of the inputs users control: data files, ranking files, judge outputs.

Whatever the input, the code either works or raises the project's own error with a clear message;
it never crashes with an unrelated exception."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detoxrl.data.loaders import load_table
from detoxrl.errors import DataError
from detoxrl.rewards.base import JudgeResult
from detoxrl.rewards.composite import CompositeReward
from detoxrl.rewards.rm_data import rankings_to_pairs

pytestmark = pytest.mark.cpus  # numeric: `make test-cpus` runs it on every CPU kernel set

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                        st.text(max_size=20))


@FAST
@given(rows=st.lists(st.fixed_dictionaries(
    {"prompt": st.text(max_size=10),
     "completions": st.one_of(st.lists(st.text(max_size=5), max_size=5), json_scalar),
     "ranks": st.one_of(st.lists(st.one_of(st.integers(-3, 5), st.floats(allow_nan=True), st.text(max_size=2)),
                                 max_size=5), json_scalar)}), max_size=4))
def test_rankings_to_pairs_never_crashes_and_orders_pairs(rows):
    try:
        pairs = rankings_to_pairs(rows, "fuzz.jsonl")
    except DataError as err:
        assert "fuzz.jsonl row" in str(err)
        return
    expected = 0
    for row in rows:
        ranks = [float(r) for r in row["ranks"]]
        by_text = dict(zip(row["completions"], ranks))
        for i in range(len(ranks)):
            for j in range(i + 1, len(ranks)):
                expected += ranks[i] != ranks[j]
        for p in pairs:
            if p.chosen in by_text and p.rejected in by_text and p.prompt == row["prompt"]:
                assert by_text[p.chosen] <= by_text[p.rejected] or p.chosen == p.rejected
    assert len(pairs) == expected


@FAST
@given(lines=st.lists(st.one_of(
    st.dictionaries(st.sampled_from(["text", "summary", "id", "other"]), json_scalar, max_size=4),
    st.text(max_size=30), st.binary(max_size=30)), min_size=1, max_size=6),
    skip=st.booleans())
def test_jsonl_loader_works_or_names_the_row(tmp_path_factory, lines, skip):
    path = tmp_path_factory.mktemp("fuzz") / "data.jsonl"
    raw = b""
    for line in lines:
        if isinstance(line, dict):
            raw += json.dumps(line).encode() + b"\n"
        elif isinstance(line, bytes):
            raw += line.replace(b"\n", b" ") + b"\n"
        else:
            raw += line.replace("\n", " ").encode("utf-8", "surrogatepass") + b"\n"
    path.write_bytes(raw)
    try:
        res = load_table(path, "jsonl", "text", ["summary"], skip_bad_rows=skip)
    except DataError as err:
        assert "data.jsonl" in str(err)
        return
    for ex in res.examples:
        assert isinstance(ex.text, str) and ex.text.strip()
        assert all(isinstance(r, str) and r.strip() for r in ex.references)


class _Fixed:
    def __init__(self, name, dims):
        self.name, self.dimensions, self.threshold = name, dims, 0.5


finite = st.floats(-50, 50, allow_nan=False)
prob = st.floats(0, 1)


@FAST
@given(data=st.lists(st.tuples(finite, prob, prob, prob, finite, prob), min_size=1, max_size=8),
       bad=st.sampled_from([None, float("nan"), float("inf")]), weight=st.floats(0, 3))
def test_composite_reward_components_add_up_and_bad_numbers_surface(data, bad, weight):
    s1, t1, hate, prof, s2, sev = (torch.tensor(c, dtype=torch.float32) for c in zip(*data))
    if bad is not None:
        s2 = s2.clone()
        s2[0] = bad
    r1 = JudgeResult("a", s1, t1, {"hate": hate}, severity=sev)
    r2 = JudgeResult("b", s2, prof, {"profanity": prof})
    reward = CompositeReward([_Fixed("a", ("hate",)), _Fixed("b", ("profanity",))], [1.0, weight])
    out = reward.combine({"a": r1, "b": r2})
    if bad is None:
        assert torch.isfinite(out.total).all()
        summed = torch.stack(list(out.components.values())).sum(0)
        assert torch.allclose(summed, out.total, atol=1e-4)
        assert out.n_nonfinite == 0
    else:
        assert torch.isnan(out.total[0]) and out.n_nonfinite >= 1
        assert torch.isfinite(out.total[1:]).all()


def test_contradictory_ranking_is_refused():
    with pytest.raises(DataError, match="contradictory"):
        rankings_to_pairs([{"prompt": "p", "completions": ["a", "b", "a"], "ranks": [1, 2, 3]}], "r.jsonl")
