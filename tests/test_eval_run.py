"""The eval stage: eval.json schema and figures from synthetic arrays, the side-by-side table, and a
whole run on tiny random T5 / GPT-2 models with word-counting judges."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from detoxrl.config import config_from_dict
from detoxrl.errors import ConfigError, DataError, ModelError
from detoxrl.evaluation import evaluate as E
from detoxrl.evaluation import generation as G
from detoxrl.evaluation import judging as J
from detoxrl.evaluation import printing as P
from detoxrl.evaluation import summary as S
from detoxrl.evaluation.table import judge_columns, read_eval_table, table_judges, write_eval_table
from detoxrl.rewards.base import JudgeResult

SIDE_KEYS = {"model", "toxicity_mean", "toxicity_std", "toxicity_ci95", "toxicity_std_ci95", "toxic_rate",
             "toxic_rate_ci95", "reward_mean", "rouge1", "rouge2", "rougeL", "length_mean", "distinct_1",
             "distinct_2", "per_judge"}
PER_JUDGE_KEYS = {"toxicity_mean", "toxicity_ci95", "toxic_rate", "toxic_rate_ci95", "score_mean"}
TOP_KEYS = {"n_prompts", "samples", "split", "decoding", "seed", "judges", "primary_judge", "before", "after",
            "improvement", "paired", "timing"}


class WordJudge:
    """Toxicity = share of a text's words that are in ``words``; score = 1 − toxicity."""

    def __init__(self, name: str, words, threshold: float = 0.3):
        self.name, self.words, self.threshold = name, set(words), threshold
        self.calls = 0

    def score(self, texts, prompts=None) -> JudgeResult:
        self.calls += 1
        tox = torch.tensor([sum(w in self.words for w in t.split()) / max(1, len(t.split())) for t in texts])
        return JudgeResult(self.name, 1 - tox, tox, {}, None, self.threshold)


@pytest.fixture
def word_judges(monkeypatch):
    made = {}

    def fake_build(settings, cfg, device="cpu"):
        step = 3 if settings.name == "primary" else 5
        made[settings.name] = WordJudge(settings.name, [f"w{i}" for i in range(0, 60, step)])
        return made[settings.name]

    monkeypatch.setattr(J, "build_judge", fake_build)
    return made


@pytest.fixture
def cfg_factory(tmp_path):
    rng = random.Random(0)
    rows = [{"fname": f"t{i}", "dialogue": " ".join(f"w{rng.randrange(4, 60)}" for _ in range(10)),
             "summary1": "w1 w2 w3", "summary2": "w4 w5", "summary3": "w6"} for i in range(14)]
    data = tmp_path / "dialogsum.test.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")

    def make(ref_dir: Path, policy_dir: Path, **eval_over):
        ev = {"n_prompts": 12, "batch_size": 5, "bootstrap": 200,
              "generation": {"do_sample": False, "max_new_tokens": 8},
              "extra_judges": [{"name": "heldout", "type": "profanity"}]}
        ev.update(eval_over)
        return config_from_dict({
            "name": "t", "run_dir": str(tmp_path / "run"), "seed": 3,
            "policy": {"name_or_path": str(ref_dir)},
            "data": {"source": str(tmp_path / "dialogsum.{split}.jsonl"), "prompt_template": "{text}",
                     "max_prompt_tokens": 32},
            "reward": {"judges": [{"name": "primary", "type": "lexicon", "lexicon": "unused"}]},
            "ppo": {"output_dir": str(policy_dir)},
            "eval": ev,
        })

    return make


def perturbed_copy(src: Path, dst: Path, scale: float = 0.3) -> Path:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    seq2seq = AutoConfig.from_pretrained(src).is_encoder_decoder
    model = (AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM).from_pretrained(src)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    model.save_pretrained(dst)
    AutoTokenizer.from_pretrained(src).save_pretrained(dst)
    return dst


# ---------------------------------------------------------------------------------- run on models
EVAL_DOC = Path(__file__).resolve().parents[1] / "docs" / "eval-json.md"


def assert_documented(res: dict) -> None:
    """Every key that eval.json holds is named in docs/eval-json.md's schema, so the two cannot drift apart."""
    if not EVAL_DOC.exists():
        pytest.skip("docs/eval-json.md is not beside the tests (installed package)")
    text = EVAL_DOC.read_text(encoding="utf-8")
    schema = text[text.index("## `eval.json`"):text.index("## `eval_table.csv`")]
    keys = set(res) | set(res["before"]) | set(res["after"]) | set(res["improvement"]) | set(res["timing"])
    keys |= {k for side in ("before", "after") for pj in res[side]["per_judge"].values() for k in pj}
    keys |= {k for p in res["paired"].values() for k in p} | {k for j in res["judges"] for k in j}
    missing = sorted(k for k in keys if f'"{k}"' not in schema)
    assert not missing, f"eval.json keys not documented in docs/eval-json.md: {missing}"


@pytest.mark.parametrize("arch", ["t5", "gpt2"])
@pytest.mark.cpus
def test_run_eval_writes_schema_and_table(arch, tiny_t5_dir, tiny_gpt2_dir, tmp_path, cfg_factory, word_judges):
    ref = tiny_t5_dir if arch == "t5" else tiny_gpt2_dir
    policy = perturbed_copy(ref, tmp_path / "policy")
    cfg = cfg_factory(ref, policy)
    res = E.run_eval(cfg)
    on_disk = json.loads((cfg.run_path / "eval.json").read_text())
    assert on_disk == res
    assert TOP_KEYS <= set(res)
    assert SIDE_KEYS <= set(res["before"]) and SIDE_KEYS <= set(res["after"])
    assert "expected_max_toxicity" not in res["before"]  # only with samples > 1
    assert {"kl_to_reference", "kl_to_reference_ci95"} <= set(res["after"])
    assert res["after"]["kl_to_reference"] > 0
    assert res["n_prompts"] == 12 and res["samples"] == 1 and res["split"] == "test"
    assert res["primary_judge"] == "primary"
    assert [(j["name"], j["trained_against"]) for j in res["judges"]] == [("primary", True), ("heldout", False)]
    assert {j["type"] for j in res["judges"]} == {"lexicon", "profanity"}
    for side in ("before", "after"):
        assert set(res[side]["per_judge"]) == {"primary", "heldout"}
        for pj in res[side]["per_judge"].values():
            assert PER_JUDGE_KEYS <= set(pj)
        # the headline numbers are the primary judge's
        assert res[side]["toxicity_mean"] == res[side]["per_judge"]["primary"]["toxicity_mean"]
        lo, hi = res[side]["toxicity_ci95"]
        assert lo <= res[side]["toxicity_mean"] <= hi
    assert {"toxicity_mean_pct", "toxicity_std_pct", "toxic_rate_abs", "per_judge"} <= set(res["improvement"])
    for name in ("primary", "heldout"):
        assert {"mean_diff", "ci95", "p_value"} <= set(res["paired"][name])
        assert 0 < res["paired"][name]["p_value"] <= 1
    assert {"generation_s", "judging_s", "total_s"} <= set(res["timing"])
    # by type and severity: the word judges report no dimension
    assert set(res["per_dimension"]) == {"reward", "held_out", "all"}
    assert res["per_dimension"]["all"]["hate"] == {"absent": True}
    # no tier column: the reward judges' toxicity of each dialogue and curriculum.tier_thresholds tier the prompts
    assert "note" in res["per_severity_tier"] and res["per_prompt_tier"]["source"] == "thresholds"
    assert sum(t["n_prompts"] for t in res["per_prompt_tier"]["tiers"].values()) == res["n_prompts"]
    assert res["over_correction"]["prompts"] == "ambiguous and clean"  # of the tiers the judges gave
    # the references ("w1 w2 w3", ...) hold no word of 3 characters, so no prompt can be measured
    assert res["over_correction"]["n_skipped"] == 12 and res["over_correction"]["overall"]["n_prompts"] == 0
    assert_documented(res)

    rows = read_eval_table(cfg.run_path / "eval_table.csv")
    assert len(rows) == 12
    assert table_judges(list(rows[0])) == ["primary", "heldout"]
    assert rows[0]["reference_summary"] == "w1 w2 w3\n\nw4 w5\n\nw6"
    tox_after = [float(r[judge_columns("primary")[1]]) for r in rows]
    assert np.mean(tox_after) == pytest.approx(res["after"]["toxicity_mean"], abs=1e-5)
    for r in rows:
        assert float(r["reward_diff"]) == pytest.approx(float(r["reward_after"]) - float(r["reward_before"]), abs=2e-5)


@pytest.mark.cpus
def test_kl_along_the_after_responses_matches_a_separate_pass(tiny_t5_dir, tmp_path):
    """With plain sampling the KL is computed along the generated responses; the texts are unchanged by
    it, and the per-prompt KL equals the one a separate pass computes over the same responses."""
    from detoxrl.config import GenerationSettings
    from detoxrl.models.policy import generate_responses, load_policy_model

    ref = load_policy_model(str(tiny_t5_dir))
    pol = load_policy_model(str(perturbed_copy(tiny_t5_dir, tmp_path / "pol")))
    prompts = [" ".join(f"w{(i * 7 + j) % 50}" for j in range(3 + i % 4)) for i in range(9)]
    gen = GenerationSettings(max_new_tokens=6, do_sample=True)
    plain = G.generate_all(pol, prompts, gen, samples=1, batch_size=4, max_prompt_tokens=32, seed=3)
    both = G.generate_all(pol, prompts, gen, samples=1, batch_size=4, max_prompt_tokens=32, seed=3,
                          kl_ref=ref.model)
    assert both.texts == plain.texts and plain.kl is None
    assert both.kl.shape == (9,) and (both.kl > 0).all()
    # the same responses again, batch by batch, through the separate KL helper
    order = G._length_order(prompts)
    for b, idx in enumerate(G.chunks(order, 4)):
        g = generate_responses(pol, [prompts[i] for i in idx], gen, max_prompt_tokens=32,
                               seed=G.batch_seed(3, 0, b))
        assert [both.texts[0][i] for i in idx] == g.texts
        assert G._batch_kl(pol, ref.model, g) == pytest.approx(both.kl[idx].tolist(), rel=1e-5)
    with pytest.raises(ValueError, match="plain sampling"):
        G.generate_all(pol, prompts, gen.model_copy(update={"top_k": 5}), samples=1, batch_size=4,
                       max_prompt_tokens=32, seed=3, kl_ref=ref.model)


@pytest.mark.slow
@pytest.mark.cpus
def test_run_eval_same_model_has_zero_kl_and_is_deterministic(tiny_t5_dir, cfg_factory, word_judges):
    cfg = cfg_factory(tiny_t5_dir, tiny_t5_dir)  # "trained" policy = reference
    res = E.run_eval(cfg)
    assert res["after"]["kl_to_reference"] == pytest.approx(0.0, abs=1e-5)
    for name in ("primary", "heldout"):
        assert res["paired"][name]["mean_diff"] == 0.0
        assert res["paired"][name]["p_value"] == 1.0
        assert res["paired"][name]["verdict"] == "no significant change"
    again = E.run_eval(cfg)
    strip = lambda r: {k: v for k, v in r.items() if k != "timing"}  # noqa: E731
    assert strip(again) == strip(res)


@pytest.mark.slow
def test_run_eval_samples_reports_expected_max_toxicity(tiny_t5_dir, tmp_path, cfg_factory, word_judges):
    cfg = cfg_factory(tiny_t5_dir, perturbed_copy(tiny_t5_dir, tmp_path / "policy"), n_prompts=6)
    res = E.run_eval(cfg, samples=3)
    assert res["samples"] == 3 and res["decoding"]["do_sample"] is True
    for side in ("before", "after"):
        emt = res[side]["expected_max_toxicity"]
        assert res[side]["toxicity_mean"] <= emt + 1e-9  # the max over samples is at least the mean
        assert len(res[side]["expected_max_toxicity_ci95"]) == 2
    rows = read_eval_table(cfg.run_path / "eval_table.csv")
    assert len(rows) == 18 and sorted({r["sample"] for r in rows}) == ["0", "1", "2"]


def test_run_eval_errors(tiny_t5_dir, tmp_path, cfg_factory, word_judges):
    with pytest.raises(ModelError, match="no trained policy"):
        E.run_eval(cfg_factory(tiny_t5_dir, tmp_path / "missing"))
    # a prompt tier outside clean / ambiguous / harmful stops eval before any generation
    data = tmp_path / "dialogsum.test.jsonl"
    rows = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines()]
    for r in rows:
        r["tier"] = "clean"
    rows[1]["tier"] = "bogus"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(DataError, match="curriculum.tier_column 'tier': prompt 't1'.*'bogus'"):
        E.run_eval(cfg_factory(tiny_t5_dir, tiny_t5_dir))
    rows[1]["tier"] = None  # a tier on some prompts only: the first without one is named
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(DataError, match="prompt 't1' \\(row 1\\) has no tier"):
        E.run_eval(cfg_factory(tiny_t5_dir, tiny_t5_dir))
    cfg = cfg_factory(tiny_t5_dir, tiny_t5_dir, extra_judges=[{"name": "primary", "type": "profanity"}])
    with pytest.raises(ConfigError, match="unique"):
        J.build_eval_judges(cfg)


# ------------------------------------------------------------------------------- synthetic arrays
class _P:
    def __init__(self, i, refs):
        self.id, self.text, self.prompt, self.references = f"p{i}", f"dialogue {i}", f"prompt {i}", refs


def test_summarize_from_arrays_by_hand(cfg_factory, tmp_path):
    cfg = cfg_factory(tmp_path, tmp_path)
    prompts = [_P(i, ["the cat sat"]) for i in range(4)]
    judges = [{"name": "a", "type": "hf", "model": "m", "threshold": 0.5, "trained_against": True},
              {"name": "b", "type": "profanity", "model": "x", "threshold": 0.5, "trained_against": False}]
    tb = {"a": {"toxicity": np.array([[0.8, 0.6, 0.2, 0.0]]), "score": np.array([[-1.0, -0.5, 1.0, 2.0]])},
          "b": {"toxicity": np.array([[0.0, 0.0, 0.9, 0.0]]), "score": np.zeros((1, 4))}}
    ta = {"a": {"toxicity": np.array([[0.4, 0.2, 0.2, 0.0]]), "score": np.array([[0.5, 1.0, 1.0, 2.0]])},
          "b": {"toxicity": np.array([[0.0, 0.0, 0.0, 0.0]]), "score": np.zeros((1, 4))}}
    texts = [["the cat sat", "a dog", "the cat", "x y"]]
    res = S.summarize(cfg=cfg, judges=judges, primary="a", prompts=prompts, samples=1, decoding={}, seed=0,
                      before_model="ref", after_model="pol", texts_before=texts, texts_after=texts,
                      lengths_before=np.ones((1, 4)), lengths_after=np.ones((1, 4)),
                      judged_before=tb, judged_after=ta, kl=np.array([0.1, 0.3, 0.2, 0.2]), timing={})
    b, a = res["before"], res["after"]
    assert b["toxicity_mean"] == pytest.approx(0.4) and a["toxicity_mean"] == pytest.approx(0.2)
    # union of judges: before, a flags p0 and p1, b flags p2 -> 3/4; after nothing
    assert b["toxic_rate"] == pytest.approx(0.75) and a["toxic_rate"] == 0.0
    assert b["per_judge"]["a"]["toxic_rate"] == pytest.approx(0.5)
    # held-out judges only (b, not trained against): before p2 -> 1/4, after nothing
    assert b["held_out_toxic_rate"] == pytest.approx(0.25) and a["held_out_toxic_rate"] == 0.0
    assert res["improvement"]["toxicity_mean_pct"] == pytest.approx(50.0)
    assert res["improvement"]["toxic_rate_abs"] == pytest.approx(0.75)
    assert res["improvement"]["per_judge"]["b"]["toxicity_mean_pct"] == pytest.approx(100.0)
    assert res["paired"]["a"]["mean_diff"] == pytest.approx(-0.2)
    assert res["paired_reward"]["mean_diff"] == pytest.approx(0.75)
    assert a["kl_to_reference"] == pytest.approx(0.2)
    assert b["reward_mean"] == pytest.approx(0.375)
    # ROUGE-1 against "the cat sat": 1, 0, F(P=1,R=2/3)=0.8, 0 -> 0.45
    assert b["rouge1"] == pytest.approx(0.45)
    # NaN (0 -> 0.0 is fine, but std 0 -> 0 gives 0) survives json_clean as null
    clean = S.json_clean({"x": math.nan, "y": np.float32(1.5), "z": (1, 2), "w": np.bool_(True)})
    assert clean == {"x": None, "y": 1.5, "z": [1, 2], "w": True}
    json.dumps(S.json_clean(res), allow_nan=False)


def test_verdicts():
    assert S.verdict({"ci95": [-0.3, -0.1], "p_value": 0.001}) == "less toxic"
    assert S.verdict({"ci95": [0.1, 0.3], "p_value": 0.001}) == "more toxic"
    assert S.verdict({"ci95": [-0.1, 0.3], "p_value": 0.2}) == "no significant change"
    assert S.verdict({"ci95": [None, None], "p_value": None}) == "not enough data"


def test_format_p():
    assert P.format_p(0.0123) == "= 0.0123"
    assert P.format_p(0.001, 0.001) == "≤ 0.001"
    assert P.format_p(None) == "= n/a"


def test_table_round_trip_keeps_awkward_text(tmp_path):
    rows = [{"id": "a", "sample": 0, "dialogue": 'line one\nline "two", with comma', "reward_before": 0.5,
             "reward_after": float("nan"), "toxic_before": True, "toxic_after": False,
             judge_columns("j,1")[0]: 0.25}]
    path = write_eval_table(tmp_path / "t.csv", rows, ["j,1"])
    back = read_eval_table(path)
    assert back[0]["dialogue"] == 'line one\nline "two", with comma'
    assert back[0]["reward_after"] == "" and back[0]["toxic_before"] == "1"
    assert back[0]["toxicity_before[j,1]"] == "0.25"
    assert table_judges(list(back[0])) == ["j,1"]


def test_generation_settings_for_samples():
    from detoxrl.config import GenerationSettings

    greedy = GenerationSettings(do_sample=False, max_new_tokens=7, top_k=5)
    assert G.eval_generation(greedy, 1) is greedy
    assert G.eval_generation(greedy, 4).do_sample is True
    kl = G.kl_generation(greedy)
    assert (kl.do_sample, kl.top_k, kl.top_p, kl.temperature, kl.max_new_tokens) == (True, 0, 1.0, 1.0, 7)


def test_eval_prompts_from_real_dialogsum_keep_three_references(tmp_path):
    from conftest import SHARED_DATA, make_tokenizer

    folder = SHARED_DATA / "dialogsum"
    if not (folder / "dialogsum.test.jsonl").exists():
        pytest.skip("DialogSum test file not available")
    cfg = config_from_dict({
        "name": "t", "run_dir": str(tmp_path), "policy": {"name_or_path": "unused"},
        "data": {"source": str(folder), "format": "dialogsum", "max_prompt_tokens": 2000},
        "reward": {"judges": [{"name": "p", "type": "profanity"}]},
        "eval": {"n_prompts": 5},
    })
    prompts, stats = E.load_eval_prompts(cfg, make_tokenizer(append_eos=True))
    assert len(prompts) == 5 and stats["kept"] >= 5
    assert all(len(p.references) == 3 for p in prompts)
    assert prompts[0].id == "test_0"
    # a response equal to one of the three references scores a perfect best-reference ROUGE
    from detoxrl.evaluation.metrics import rouge_scores

    res = rouge_scores([p.references[2] for p in prompts], [p.references for p in prompts])
    assert res["rouge1"] == pytest.approx(1.0) and res["rougeL"] == pytest.approx(1.0)
