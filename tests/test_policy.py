"""Policy loading, generation and response logprobs for both model shapes."""

from __future__ import annotations

import pytest
import torch

from detoxrl.config import GenerationSettings, LoraSettings, ModelSettings
from detoxrl.errors import ModelError
from detoxrl.models.policy import (
    InverseCDFSampler,
    PolicyWithValue,
    generate_responses,
    generation_config,
    load_policy_model,
    response_logits,
    sampling_processors,
    save_policy,
)

pytestmark = pytest.mark.cpus  # numeric: `make test-cpus` runs it on every CPU kernel set

PROMPTS = ["w1 w2 w3 w4", "w5 w6", "w7 w8 w9"]


def test_loads_both_shapes(tiny_t5_dir, tiny_gpt2_dir):
    t5 = load_policy_model(str(tiny_t5_dir))
    gpt = load_policy_model(str(tiny_gpt2_dir))
    assert t5.is_seq2seq and not gpt.is_seq2seq
    assert gpt.tokenizer.padding_side == "left"


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_policy_model(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        load_policy_model(str(tmp_path / "empty"))


def test_response_logits_match_generation_scores(tiny_policy_dir):
    """logits[:, t] must be exactly the distribution generate() sampled response token t from."""
    lp = load_policy_model(str(tiny_policy_dir))
    gen = GenerationSettings(max_new_tokens=6)
    g = generate_responses(lp, PROMPTS, gen, max_prompt_tokens=16, seed=3)
    torch.manual_seed(3)
    gcfg = generation_config(gen, lp)
    gcfg.output_logits, gcfg.return_dict_in_generate = True, True
    out = lp.model.generate(input_ids=g.query_ids, attention_mask=g.query_mask, generation_config=gcfg,
                            logits_processor=sampling_processors(gen))
    start = 1 if lp.is_seq2seq else g.query_ids.shape[1]
    same = out.sequences[:, start:start + g.response_ids.shape[1]]
    assert torch.equal(same[g.response_mask.bool()], g.response_ids[g.response_mask.bool()])
    scores = torch.stack(out.logits, 1)  # the raw logits of every step, before any processor
    with torch.no_grad():
        logits = response_logits(lp.model, lp.is_seq2seq, g.query_ids, g.query_mask, g.response_ids,
                                 g.response_mask)
    t = min(scores.shape[1], logits.shape[1])
    m = g.response_mask[:, :t].bool()
    diff = torch.log_softmax(scores[:, :t], -1) - torch.log_softmax(logits[:, :t], -1)
    assert diff[m].abs().max() < 1e-4


def test_same_seed_same_samples(tiny_policy_dir):
    lp = load_policy_model(str(tiny_policy_dir))
    gen = GenerationSettings(max_new_tokens=8)
    a = generate_responses(lp, PROMPTS, gen, max_prompt_tokens=16, seed=11)
    b = generate_responses(lp, PROMPTS, gen, max_prompt_tokens=16, seed=11)
    assert torch.equal(a.response_ids, b.response_ids) and a.texts == b.texts


def test_lora_disabled_adapter_equals_base_logits(tiny_policy_dir):
    base = load_policy_model(str(tiny_policy_dir))
    settings = ModelSettings(name_or_path=str(tiny_policy_dir),
                             lora=LoraSettings(enabled=True, r=4, alpha=8, dropout=0.0,
                                               target_modules=["q", "v"] if base.is_seq2seq else ["c_attn"]))
    lora = load_policy_model(settings, apply_lora=True)
    # make the adapters non-trivial so that "disabled" is a real check
    with torch.no_grad():
        for n, p in lora.model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    g = generate_responses(base, PROMPTS, GenerationSettings(max_new_tokens=5), max_prompt_tokens=16, seed=0)
    args = (g.query_ids, g.query_mask, g.response_ids, g.response_mask)
    base.model.eval(), lora.model.eval()
    with torch.no_grad():
        ref = response_logits(base.model, base.is_seq2seq, *args)
        on = response_logits(lora.model, lora.is_seq2seq, *args)
        with lora.model.disable_adapter():
            off = response_logits(lora.model, lora.is_seq2seq, *args)
    assert torch.allclose(off, ref, atol=1e-5)
    assert not torch.allclose(on, ref, atol=1e-3)


def test_save_lora_writes_merged_model_and_adapter(tiny_t5_dir, tmp_path):
    from transformers import AutoModelForSeq2SeqLM

    settings = ModelSettings(name_or_path=str(tiny_t5_dir),
                             lora=LoraSettings(enabled=True, r=4, alpha=8, dropout=0.0))
    lp = load_policy_model(settings, apply_lora=True)
    with torch.no_grad():
        for n, p in lp.model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    pv = PolicyWithValue(lp.model, True)
    save_policy(lp.model, lp.tokenizer, tmp_path / "out", value_head=pv.value_head, base_name=str(tiny_t5_dir))
    assert (tmp_path / "out" / "adapter" / "adapter_config.json").exists()
    assert (tmp_path / "out" / "value_head.safetensors").exists()
    plain = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "out").eval()  # plain transformers
    via_adapter = load_policy_model(str(tmp_path / "out" / "adapter"))
    lp.model.eval()
    q = lp.tokenizer(["w1 w2"], return_tensors="pt")
    dec = torch.tensor([[0, 5, 6]])
    with torch.no_grad():
        a = plain(**q, decoder_input_ids=dec).logits
        b = lp.model(**q, decoder_input_ids=dec).logits
        c = via_adapter.model(**q, decoder_input_ids=dec).logits
    assert torch.allclose(a, b, atol=1e-4) and torch.allclose(c, b, atol=1e-4)


def test_pickle_only_folder_is_refused(tiny_t5_dir, tmp_path):
    import shutil

    from transformers import T5ForConditionalGeneration

    d = tmp_path / "pickled"
    shutil.copytree(tiny_t5_dir, d)
    (d / "model.safetensors").unlink()
    model = T5ForConditionalGeneration.from_pretrained(tiny_t5_dir)
    torch.save(model.state_dict(), d / "pytorch_model.bin")
    with pytest.raises(ModelError, match="safetensors"):
        load_policy_model(str(d))


def test_inverse_cdf_sampler_draws_from_the_softmax():
    """Frequencies over 40,000 draws match softmax(scores) within 4.5 standard errors; -inf is never drawn."""
    scores = torch.tensor([[2.0, 1.0, 0.0, float("-inf"), -1.0]])
    p = torch.softmax(scores, -1)[0]
    n = 40_000
    torch.manual_seed(0)
    out = InverseCDFSampler()(torch.zeros(n, 1, dtype=torch.long), scores.expand(n, -1).clone())
    assert torch.all((out == 0).sum(1) == 1) and torch.all(torch.isinf(out).sum(1) == 4)
    freq = torch.bincount(out.argmax(1), minlength=5).double() / n
    se = (p * (1 - p) / n).sqrt()
    assert freq[3] == 0
    assert torch.all((freq - p).abs() <= 4.5 * se + 1e-12), (freq, p)


def test_sampling_processors_follow_the_settings():
    kinds = lambda g: [type(x).__name__ for x in sampling_processors(g)]  # noqa: E731
    assert kinds(GenerationSettings()) == ["InverseCDFSampler"]
    assert kinds(GenerationSettings(do_sample=False)) == []
    assert kinds(GenerationSettings(temperature=0.7, top_k=5, top_p=0.9)) == [
        "TemperatureLogitsWarper", "TopKLogitsWarper", "TopPLogitsWarper", "InverseCDFSampler"]
    # top-k 2: only the two best tokens ever come out
    torch.manual_seed(1)
    scores = torch.tensor([[0.0, 3.0, 1.0, 2.5]]).expand(2_000, -1).clone()
    for proc in sampling_processors(GenerationSettings(top_k=2)):
        scores = proc(torch.zeros(2_000, 1, dtype=torch.long), scores)
    assert set(scores.argmax(1).tolist()) == {1, 3}
