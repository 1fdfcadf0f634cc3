"""Reward-model training: rankings → pairs, the pairwise loss by hand, and end-to-end runs (labels and
rankings) on tiny RoBERTa models that must learn, be deterministic, and load without detoxrl."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch
from conftest import learning_seed, record_margin

from detoxrl.config import config_from_dict
from detoxrl.errors import ConfigError, DataError
from detoxrl.rewards.rm_data import Pair, bucketed_batches, label_ids, rankings_to_pairs
from detoxrl.rewards.train import lr_at, pairwise_loss, train_rm

pytestmark = pytest.mark.cpus  # numeric: `make test-cpus` runs it on every CPU kernel set

CLEAN = "you are a kind friend the meeting went well today thanks for help cat dog report budget plan".split()
BAD = ["zorp", "blarg", "snib", "quux"]


# ------------------------------------------------------------------------------------ pure parts
def test_rankings_to_pairs_all_pairs_best_first():
    rows = [{"prompt": "p", "completions": ["a", "b", "c"], "ranks": [2, 1, 3]}]
    assert rankings_to_pairs(rows) == [Pair("p", "b", "a"), Pair("p", "a", "c"), Pair("p", "b", "c")]


def test_rankings_ties_and_single_completion_make_no_pairs():
    rows = [{"prompt": "p", "completions": ["a", "b", "c"], "ranks": [1, 1, 2]},
            {"prompt": "q", "completions": ["only"], "ranks": [1]},
            {"prompt": "r", "completions": ["x", "y"], "ranks": [2, 2]},
            {"completions": ["u", "v"], "ranks": ["2", 1.0]}]
    assert rankings_to_pairs(rows) == [Pair("p", "a", "c"), Pair("p", "b", "c"), Pair("", "v", "u")]


@pytest.mark.parametrize("row, message", [
    ({"prompt": "p", "completions": ["a", "b"], "ranks": [1]}, "2 completions but 1 ranks"),
    ({"prompt": "p", "completions": ["a", "b"], "ranks": [1, "best"]}, "rank 'best' is not a number"),
    ({"prompt": "p", "completions": ["a", "b"], "ranks": [1, True]}, "rank True is not a number"),
    ({"prompt": "p", "completions": ["a", "b"], "ranks": [1, None]}, "rank None is not a number"),
    ({"prompt": "p", "completions": ["a", "b"], "ranks": [1, float("nan")]}, "rank nan is not a finite number"),
    ({"prompt": "p", "completions": "ab", "ranks": [1, 2]}, "`completions` and `ranks` must both be lists"),
])
def test_rankings_bad_rows_name_file_and_row(row, message):
    good = {"prompt": "p", "completions": ["a", "b"], "ranks": [1, 2], "_row": 1}
    with pytest.raises(DataError, match=f"ranks.jsonl row 7: {message}"):
        rankings_to_pairs([good, {**row, "_row": 7}], "ranks.jsonl")


def test_pairwise_loss_hand_computed():
    # −log σ(1 − 0) = log(1 + e^−1) = 0.3132617; −log σ(0 − 2) = log(1 + e^2) = 2.1269280
    loss = pairwise_loss(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0]))
    assert loss.item() == pytest.approx((math.log(1 + math.exp(-1)) + math.log(1 + math.exp(2))) / 2)
    assert loss.item() == pytest.approx(1.2200948, abs=1e-6)
    assert pairwise_loss(torch.tensor([0.0]), torch.tensor([0.0])).item() == pytest.approx(math.log(2))


def test_lr_schedule_warmup_then_linear_decay():
    assert [lr_at(k, 10, 2) for k in range(10)] == pytest.approx(
        [0.5, 1.0, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125])


def test_bucketed_batches_cover_every_row_once_with_little_padding():
    lengths = [random.Random(k).randint(1, 100) for k in range(1000)]
    batches = bucketed_batches(lengths, 16, torch.Generator().manual_seed(0), bucket=4)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    assert batches == bucketed_batches(lengths, 16, torch.Generator().manual_seed(0), bucket=4)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    plain = [list(range(k, min(k + 16, 1000))) for k in range(0, 1000, 16)]
    assert padded < 0.85 * sum(len(b) * max(lengths[i] for i in b) for b in plain)


def test_label_ids_names_indices_and_errors():
    rows = [{"_row": i} for i in range(1, 6)]
    assert label_ids(["nothate", "hate", 1, "0", "HATE"], ["nothate", "hate"], rows, "f") == [0, 1, 1, 0, 1]
    with pytest.raises(DataError, match=r"f row 2: label 'toxic' is not one of \['nothate', 'hate'\]"):
        label_ids(["hate", "toxic"], ["nothate", "hate"], rows, "f")
    with pytest.raises(DataError, match="label 2 is not one of"):
        label_ids([2], ["nothate", "hate"], rows, "f")


# ------------------------------------------------------------------------------------ end to end
def synthetic_text(rng: random.Random, n_bad: int) -> str:
    words = [rng.choice(CLEAN) for _ in range(rng.randint(4, 8))]
    for _ in range(n_bad):
        words.insert(rng.randrange(len(words) + 1), rng.choice(BAD))
    return " ".join(words)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def make_cfg(tmp_path, **train_rm):
    from test_rewards_hf import make_roberta_dir

    base = make_roberta_dir(tmp_path / "judge-init", words=CLEAN + BAD, hidden=32, layers=1, init_range=0.02)
    return config_from_dict({
        "name": "t", "run_dir": str(tmp_path / "run"), "data": {"source": "x.jsonl"},
        "policy": {"name_or_path": "p"},
        "reward": {"judges": [{"name": "j", "model": "{run_dir}/judge", "label": "nothate"}]},
        "train_rm": {"enabled": True, "base_model": str(base), **train_rm},
    })


@pytest.fixture(scope="module")
def labelled_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("labelled")
    rng = random.Random(0)

    def rows(n):
        out = []
        for _ in range(n):
            hate = rng.random() < 0.4
            out.append({"text": synthetic_text(rng, 1 if hate else 0), "label": "hate" if hate else "nothate"})
        return out

    return write_jsonl(d / "train.jsonl", rows(640)), write_jsonl(d / "eval.jsonl", rows(200))


@pytest.mark.slow
@pytest.mark.learning
def test_train_labels_learns_and_loads_without_detoxrl(tmp_path, labelled_files, request):
    """Margins, seeds 0/1/2 (the same on generic and AVX2 kernels): accuracy 1.0 (threshold 0.95),
    gain 0.405 (0.2), AUC 1.0 (0.98), F1 1.0 (0.9), loss first − last batch 0.661-0.667 (0.1), P(hate) of
    the zorp text 0.976-0.984 and P(nothate) of the kind text 0.979-0.986 (0.5)."""
    from transformers import AutoModelForSequenceClassification

    from detoxrl.rewards.hf import HFClassifierJudge

    train, ev = labelled_files
    cfg = make_cfg(tmp_path, mode="labels", train_file=str(train), eval_file=str(ev), epochs=6,
                   batch_size=32, learning_rate=2e-3, seed=learning_seed())
    out = train_rm(cfg)
    assert out == cfg.path("{run_dir}/judge")
    metrics = json.loads((out / "train_metrics.json").read_text())
    after, before, curve = metrics["eval"], metrics["eval_before"], metrics["loss_curve"]
    record_margin(request, "accuracy", after["accuracy"], 0.95)
    record_margin(request, "accuracy after - before", after["accuracy"] - before["accuracy"], 0.2)
    record_margin(request, "auc", after["auc"], 0.98)
    record_margin(request, "f1", after["f1"], 0.9)
    record_margin(request, "loss first - last batch", curve[0] - curve[-1], 0.1)
    assert after["accuracy"] >= 0.95 and after["accuracy"] > before["accuracy"] + 0.2
    assert after["auc"] >= 0.98 and after["f1"] >= 0.9
    assert curve[-1] < curve[0] - 0.1
    assert metrics["labels"] == ["nothate", "hate"] and metrics["eval"]["positive_label"] == "hate"
    assert (out / "model.safetensors").exists() and not list(out.parent.glob(".judge.*"))
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.id2label == {0: "nothate", 1: "hate"}
    judge = HFClassifierJudge("trained", str(out), label="nothate", dimensions={"hate": "hate"})
    res = judge.score(["you are a kind friend", "you are a zorp friend"])
    record_margin(request, "P(hate) of the zorp text", res.toxicity[1], 0.5)
    record_margin(request, "P(nothate) of the kind text", 1 - res.toxicity[0], 0.5)
    assert res.toxicity[1] > 0.5 > res.toxicity[0] and res.score[0] > res.score[1]


@pytest.mark.slow
def test_train_is_deterministic_and_splits_heldout(tmp_path, labelled_files):
    train, _ = labelled_files
    runs = []
    for k in range(2):
        cfg = make_cfg(tmp_path / str(k), mode="labels", train_file=str(train), epochs=0.3, batch_size=32,
                       heldout_share=0.2)
        runs.append(json.loads((train_rm(cfg) / "train_metrics.json").read_text()))
    assert runs[0]["n_eval"] == 128 and runs[0]["n_train"] == 512
    assert runs[0]["loss_curve"] == runs[1]["loss_curve"] and runs[0]["eval"] == runs[1]["eval"]


@pytest.mark.slow
@pytest.mark.learning
def test_train_rankings_learns_pair_order(tmp_path, request):
    """Margins, seeds 0/1/2 (the same on generic and AVX2 kernels): pair accuracy 1.0 (threshold
    0.95), its gain 0.600/0.475/0.450 (0.2), eval loss gain 0.074/0.226/0.203, mean margin 0.155/0.520/0.459
    and score kind − zorp text 0.211/0.581/0.560 (each must be positive)."""
    from detoxrl.rewards.hf import HFClassifierJudge

    rng = random.Random(0)

    def rows(n):  # two clean completions tied for first, one with an offensive word last
        out = []
        for _ in range(n):
            n_bad = [0, 0, 1]
            rng.shuffle(n_bad)
            comps = [synthetic_text(rng, k) for k in n_bad]
            out.append({"prompt": "summarise the meeting", "completions": comps, "ranks": [k + 1 for k in n_bad]})
        return out

    train = write_jsonl(tmp_path / "rank_train.jsonl", rows(160))
    ev = write_jsonl(tmp_path / "rank_eval.jsonl", rows(40))
    cfg = make_cfg(tmp_path, mode="rankings", train_file=str(train), eval_file=str(ev), epochs=3,
                   batch_size=32, learning_rate=3e-3, output_dir="{run_dir}/rm", seed=learning_seed())
    out = train_rm(cfg)
    metrics = json.loads((out / "train_metrics.json").read_text())
    after, before = metrics["eval"], metrics["eval_before"]
    record_margin(request, "pair accuracy", after["pair_accuracy"], 0.95)
    record_margin(request, "pair accuracy after - before", after["pair_accuracy"] - before["pair_accuracy"], 0.2)
    record_margin(request, "eval loss before - after", before["loss"] - after["loss"], 0.0)
    record_margin(request, "mean margin", after["mean_margin"], 0.0)
    assert metrics["n_train"] == 320 and metrics["eval"]["n_pairs"] == 80  # ties make no pair
    assert after["pair_accuracy"] >= 0.95 and after["pair_accuracy"] > before["pair_accuracy"] + 0.2
    assert after["loss"] < before["loss"] and after["mean_margin"] > 0
    judge = HFClassifierJudge("rm", str(out))  # one output: no label needed
    res = judge.score(["you are a kind friend", "you zorp blarg"], ["summarise the meeting"] * 2)
    record_margin(request, "score kind - zorp text", res.score[0] - res.score[1], 0.0)
    assert res.score[0] > res.score[1]


def test_train_rm_config_and_data_errors(tmp_path):
    cfg = make_cfg(tmp_path, mode="labels")
    with pytest.raises(ConfigError, match="train_rm.train_file"):
        train_rm(cfg)
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"text": "a", "label": "hate"}, {"text": "b", "label": "spam"}])
    cfg = make_cfg(tmp_path, mode="labels", train_file=str(bad))
    with pytest.raises(DataError, match=r"bad.jsonl row 2: label 'spam'"):
        train_rm(cfg)
    ties = write_jsonl(tmp_path / "ties.jsonl", [{"prompt": "p", "completions": ["a", "b"], "ranks": [1, 1]}] * 4)
    cfg = make_cfg(tmp_path, mode="rankings", train_file=str(ties))
    with pytest.raises(DataError, match="need at least one of each"):
        train_rm(cfg)
    # a bad row is named before the rows are split into training and held-out parts
    short = write_jsonl(tmp_path / "short.jsonl", [{"prompt": "p", "completions": ["a", "b"], "ranks": [1]}])
    cfg = make_cfg(tmp_path, mode="rankings", train_file=str(short))
    with pytest.raises(DataError, match=r"short.jsonl row 1: 2 completions but 1 ranks"):
        train_rm(cfg)
    cfg = make_cfg(tmp_path, mode="labels", train_file=str(bad), base_model=str(tmp_path / "nowhere" / "m"))
    with pytest.raises(Exception, match="nowhere/m does not exist"):
        train_rm(cfg)


# ------------------------------------------------------------------------------- preference cycles
def test_rankings_that_disagree_across_rows_are_refused_naming_the_rows():
    rows = [{"prompt": "p", "completions": ["a", "b"], "ranks": [1, 2], "_row": 3},
            {"prompt": "q", "completions": ["b", "a"], "ranks": [1, 2], "_row": 4},  # another prompt: fine
            {"prompt": "p", "completions": ["b", "a"], "ranks": [1, 2], "_row": 9}]
    with pytest.raises(DataError, match=r"r\.jsonl row 3, row 9: contradictory rankings for prompt 'p': "
                                        r"'(a' > 'b' > 'a|b' > 'a' > 'b)' is a preference cycle"):
        rankings_to_pairs(rows, "r.jsonl")


def test_three_way_preference_cycle_is_refused():
    rows = [{"prompt": "p", "completions": ["a", "b"], "ranks": [1, 2], "_row": 1},
            {"prompt": "p", "completions": ["b", "c"], "ranks": [1, 2], "_row": 2},
            {"prompt": "p", "completions": ["c", "a", "d"], "ranks": [1, 2, 3], "_row": 5}]
    with pytest.raises(DataError, match="row 1, row 2, row 5: contradictory") as err:
        rankings_to_pairs(rows, "r.jsonl")
    msg = str(err.value)
    cycle = msg.split(": ")[-1].removesuffix(" is a preference cycle").split(" > ")
    assert len(cycle) == 4 and cycle[0] == cycle[-1] and set(cycle) == {"'a'", "'b'", "'c'"}
    assert "'d'" not in msg  # only beaten by the cycle, not on it


def test_consistent_rankings_over_several_rows_make_every_pair():
    rows = [{"prompt": "p", "completions": ["a", "b"], "ranks": [1, 2]},
            {"prompt": "p", "completions": ["b", "c"], "ranks": [1, 2]},
            {"prompt": "p", "completions": ["a", "c"], "ranks": [1, 2]}]
    assert rankings_to_pairs(rows) == [Pair("p", "a", "b"), Pair("p", "b", "c"), Pair("p", "a", "c")]


# ------------------------------------------------------------------------------------- multi-label
def multilabel_rows(rng: random.Random, n: int) -> list[dict]:
    """Texts with a 'zorp' (label a) and/or a 'blarg' (label b): two independent sigmoid labels."""
    out = []
    for _ in range(n):
        a, b = rng.random() < 0.4, rng.random() < 0.3
        words = [rng.choice(CLEAN) for _ in range(rng.randint(4, 8))]
        for bad, on in (("zorp", a), ("blarg", b)):
            if on:
                words.insert(rng.randrange(len(words) + 1), bad)
        out.append({"text": " ".join(words), "a": int(a), "b": int(b)})
    return out


def test_multilabel_targets_read_one_binary_column_per_label_and_name_bad_rows():
    from detoxrl.rewards.rm_data import multilabel_targets

    rows = [{"_row": 1, "a": 1, "b": "0"}, {"_row": 2, "a": True, "b": 0.0}]
    assert multilabel_targets(rows, ["a", "b"], "f.jsonl") == [[1.0, 0.0], [1.0, 0.0]]
    with pytest.raises(DataError, match=r"f.jsonl row 3: no column 'b'"):
        multilabel_targets([{"_row": 3, "a": 1}], ["a", "b"], "f.jsonl")
    with pytest.raises(DataError, match=r"f.jsonl row 4: column 'a' is 2, not 0 or 1"):
        multilabel_targets([{"_row": 4, "a": 2, "b": 0}], ["a", "b"], "f.jsonl")


def test_multilabel_metrics_by_hand():
    from detoxrl.rewards.train import multilabel_metrics

    logits = torch.tensor([[2.0, -1.0], [-3.0, 1.0], [1.0, -2.0], [-1.0, -1.0]])
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.0, 1.0]])
    m = multilabel_metrics(logits, y, ["a", "b"])
    # label a: predictions (σ ≥ 0.5) 1,0,1,0 vs truth 1,0,0,0 → accuracy 3/4; AUC: the positive (2.0)
    # outranks all three negatives → 1. label b: predictions 0,1,0,0 vs 0,1,0,1 → 3/4; AUC: positives
    # 1.0 and −1.0 against negatives −1.0 and −2.0: (1 + 1 + 0.5 + 1) / 4 = 0.875.
    assert m["per_label"]["a"]["accuracy"] == 0.75 and m["per_label"]["b"]["accuracy"] == 0.75
    assert m["per_label"]["a"]["auc"] == 1.0 and m["per_label"]["b"]["auc"] == pytest.approx(0.875)
    assert m["accuracy"] == 0.75 and m["auc"] == pytest.approx(0.9375)
    assert m["loss"] == pytest.approx(float(torch.nn.functional.binary_cross_entropy_with_logits(logits, y)))


@pytest.mark.slow
@pytest.mark.learning
def test_train_multilabel_learns_each_label_and_extra_models_train_first(tmp_path, request):
    """Measured on an AVX2 EPYC, seeds 0/1/2: mean AUC 0.966/0.960/1.000, AUC of b 0.932/0.920/1.000;
    the threshold 0.8 is well below both (chance is 0.5)."""
    from test_rewards_hf import make_bert_multilabel_dir

    from detoxrl.rewards.hf import HFClassifierJudge

    rng = random.Random(1)
    train = write_jsonl(tmp_path / "ml_train.jsonl", multilabel_rows(rng, 640))
    ev = write_jsonl(tmp_path / "ml_eval.jsonl", multilabel_rows(rng, 200))
    base = make_bert_multilabel_dir(tmp_path / "bert-init", labels=("a", "b"), words=CLEAN + BAD, hidden=32,
                                    init_range=0.02)
    labelled = write_jsonl(tmp_path / "l.jsonl", [{"text": r["text"], "label": "hate" if r["a"] else "nothate"}
                                                  for r in multilabel_rows(rng, 64)])
    extra = {"mode": "multilabel", "train_file": str(train), "eval_file": str(ev), "base_model": str(base),
             "labels": ["a", "b"], "output_dir": "{run_dir}/multi", "epochs": 12, "batch_size": 32,
             "learning_rate": 3e-3, "seed": learning_seed()}
    cfg = make_cfg(tmp_path, mode="labels", train_file=str(labelled), epochs=0.5, extra=[extra])
    out = train_rm(cfg)
    multi = cfg.path("{run_dir}/multi")
    assert out == cfg.path("{run_dir}/judge") and (multi / "model.safetensors").exists()
    assert (multi / "config.json").stat().st_mtime_ns <= (out / "config.json").stat().st_mtime_ns
    m = json.loads((multi / "train_metrics.json").read_text())
    assert m["mode"] == "multilabel" and m["labels"] == ["a", "b"]
    record_margin(request, "mean AUC", m["eval"]["auc"], 0.8)
    record_margin(request, "AUC of b", m["eval"]["per_label"]["b"]["auc"], 0.8)
    assert m["eval"]["auc"] > 0.8 and m["eval"]["per_label"]["b"]["auc"] > 0.8
    judge = HFClassifierJudge("m", str(multi), label="a", label_is_good=False, activation="sigmoid",
                              dimensions={"a": "harassment", "b": "profanity"})
    res = judge.score(["you are a kind friend blarg", "you are a kind friend"])
    assert res.dimensions["profanity"][0] > 0.5 > res.dimensions["profanity"][1]


def test_train_rm_extra_needs_own_output_dirs_and_no_nesting(tmp_path):
    with pytest.raises(ConfigError, match="its own output_dir"):
        make_cfg(tmp_path, train_file="x.jsonl", extra=[{"train_file": "y.jsonl", "output_dir": "{run_dir}/judge"}])
    with pytest.raises(ConfigError, match="cannot have extras"):
        make_cfg(tmp_path, train_file="x.jsonl",
                 extra=[{"output_dir": "{run_dir}/a", "extra": [{"output_dir": "{run_dir}/b"}]}])
