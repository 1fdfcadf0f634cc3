"""The PPO trainer's fast paths give the same numbers as plain reference computations.

Each test pits one optimisation against a straightforward implementation written here:

- the encoder output kept from generation (old-logprob pass; update passes when the encoder is frozen,
  e.g. LoRA on the decoder only) against running the encoder again;
- logprobs as a gather minus a log-sum-exp against a full log-softmax, and its fused backward against
  autograd's (bit for bit, float32 and bfloat16);
- temperature 1 without the division against the division;
- the rollout-time entropy that is logged against a plain softmax entropy;
- fused AdamW against the per-tensor AdamW, and AdamW's state allocated up front against torch's lazy one;
- the non-finite gradient check through the clipped total norm against a per-gradient isfinite pass;
- clipping that skips the multiply by 1 against accelerate's ``clip_grad_norm_`` (bit for bit);
- the bf16-stored reference (``ppo.mixed_precision: bf16``) against the float32 copy under autocast;
- the fused tanh-GELU against transformers' ``gelu_new`` / ``gelu_fast``;
- eager attention for T5 (``policy.attn_implementation: auto``) against ``sdpa``;
- the fixed-length key-value cache (``generation.kv_cache: auto`` for a bf16 encoder-decoder) against the
  growing one;
- prompts and responses padded to a multiple of 16 tokens (``ppo.length_multiple``, and SFT batches with
  ``sft.length_multiple``) against no padding.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from detoxrl.config import GenerationSettings, KLSettings, LoraSettings, ModelSettings, PPOSettings
from detoxrl.errors import TrainingError
from detoxrl.models.policy import forward_response, load_policy_model, tokenize_prompts
from detoxrl.optim import allocate_adam_state
from detoxrl.rl.core import logprobs_from_logits, masked_mean
from detoxrl.rl.fastpaths import fused_adam_supported, store_linear_weights_bf16
from detoxrl.rl.trainer import PPOTrainer
from detoxrl.utils import set_seed

pytestmark = pytest.mark.cpus  # numeric: `make test-cpus` runs it on every CPU kernel set

PROMPTS = [" ".join(f"w{(i * 5 + j) % 40 + 10}" for j in range(3 + i % 4)) for i in range(8)]
ATOL = 1e-5


def _reward(texts, prompts=None):
    class Out:
        total = torch.tensor([float(len(t.split())) for t in texts])
        components: dict = {}

    return Out()


def _trainer(path, *, lora_targets: list[str] | None = None, temperature: float = 1.0, accelerator=None,
             **kw) -> PPOTrainer:
    set_seed(0)
    lora = LoraSettings(enabled=lora_targets is not None, r=4, alpha=8, dropout=0.0,
                        target_modules=lora_targets or ["q", "v"])
    lp = load_policy_model(ModelSettings(name_or_path=str(path), lora=lora), apply_lora=True)
    settings = PPOSettings(steps=2, batch_size=8, mini_batch_size=4, ppo_epochs=1, learning_rate=1e-3,
                           kl=KLSettings(init_coef=0.05, adaptive=False), score_norm=False,
                           generation=GenerationSettings(max_new_tokens=6, min_new_tokens=6,
                                                         temperature=temperature), **kw)
    return PPOTrainer(settings, lp, _reward, seed=0, accelerator=accelerator)


def _rollout(tr: PPOTrainer):
    q, qm = tokenize_prompts(tr.lp.tokenizer, PROMPTS, 32)
    torch.manual_seed(1)
    return tr.make_experience(PROMPTS, q, qm, tr.s.generation.max_new_tokens)


@torch.no_grad()
def _plain_logprobs_values(tr: PPOTrainer, ro) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference: encoder recomputed, full log-softmax, explicit temperature division."""
    logits, hidden = forward_response(tr.unwrapped.lm, tr.lp.is_seq2seq, ro.query_ids, ro.query_mask,
                                      ro.response_ids, ro.response_mask, output_hidden=True)
    logp = torch.log_softmax(logits / tr.s.generation.temperature, dim=-1)
    picked = logp.gather(-1, ro.response_ids.unsqueeze(-1)).squeeze(-1)
    return picked, tr.unwrapped.value_head(hidden)


def test_old_logprob_pass_with_generation_encoder_output_matches_recomputing(tiny_t5_dir):
    tr = _trainer(tiny_t5_dir)  # full fine-tuning: the encoder output is reused right after generation
    ro = _rollout(tr)
    assert ro.encoder_hidden is not None
    ref_lp, ref_v = _plain_logprobs_values(tr, ro)
    assert torch.allclose(ro.logprobs, ref_lp, atol=ATOL)
    assert torch.allclose(ro.values, ref_v, atol=ATOL)


def test_frozen_encoder_reuse_in_updates_matches_recomputing(tiny_t5_dir):
    # LoRA on the cross-attention (decoder only): the encoder does not train, its output may be reused.
    tr = _trainer(tiny_t5_dir, lora_targets=["EncDecAttention.q", "EncDecAttention.v"])
    enc_params = [p for p in tr.unwrapped.lm.get_encoder().parameters()]
    lora_in_decoder = [n for n, p in tr.unwrapped.named_parameters() if p.requires_grad and "lora" in n]
    assert lora_in_decoder and all(".decoder." in n for n in lora_in_decoder)
    assert not any(p.requires_grad for p in enc_params)
    assert tr._frozen_encoder()
    ro = _rollout(tr)
    tr.learn(ro)  # the decoder's adapters move; the encoder output must still be exact
    idx = torch.arange(4)
    mb = ro.select(idx)
    with torch.no_grad():
        fast_logits, fast_v = tr.unwrapped(mb.query_ids, mb.query_mask, mb.response_ids, mb.response_mask,
                                           encoder_hidden=mb.encoder_hidden)
        plain_logits, plain_v = tr.unwrapped(mb.query_ids, mb.query_mask, mb.response_ids, mb.response_mask)
    assert torch.allclose(fast_logits, plain_logits, atol=ATOL)
    assert torch.allclose(fast_v, plain_v, atol=ATOL)


def test_freeze_encoder_keeps_it_and_reuses_its_output(tiny_t5_dir, tiny_gpt2_dir):
    tr = _trainer(tiny_t5_dir, freeze_encoder=True)
    assert tr._frozen_encoder()
    enc_before = {n: p.detach().clone() for n, p in tr.unwrapped.lm.get_encoder().named_parameters()}
    dec_before = {n: p.detach().clone() for n, p in tr.unwrapped.lm.get_decoder().named_parameters()
                  if p.requires_grad}
    assert dec_before  # the decoder's blocks still train
    ro = _rollout(tr)
    tr.learn(ro)
    for n, p in tr.unwrapped.lm.get_encoder().named_parameters():
        assert torch.equal(p, enc_before[n]), n
    assert any(not torch.equal(p, dec_before[n]) for n, p in tr.unwrapped.lm.get_decoder().named_parameters()
               if n in dec_before)
    # the reference, fed the reused encoder output, gives the logprobs of its own full forward pass
    ro = _rollout(tr)
    reused, _ = tr._reference_forward(ro)
    plain, _ = tr._reference_forward(replace(ro, encoder_hidden=None))
    assert torch.allclose(reused, plain, atol=ATOL)
    with pytest.raises(TrainingError, match="encoder-decoder"):
        _trainer(tiny_gpt2_dir, freeze_encoder=True)


def test_encoder_that_trains_is_not_reused(tiny_t5_dir):
    tr = _trainer(tiny_t5_dir)
    assert not tr._frozen_encoder()


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_trainer_logprobs_match_full_log_softmax(tiny_policy_dir, temperature):
    tr = _trainer(tiny_policy_dir, temperature=temperature)
    ro = _rollout(tr)
    ref_lp, ref_v = _plain_logprobs_values(tr, ro)
    m = ro.response_mask > 0
    assert torch.allclose(ro.logprobs[m], ref_lp[m], atol=ATOL)
    assert torch.allclose(ro.values[m], ref_v[m], atol=ATOL)


def test_logprobs_from_logits_matches_log_softmax_by_hand():
    logits = torch.tensor([[[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]])
    labels = torch.tensor([[2, 1]])
    # log softmax of [1, 2, 3] at index 2: 3 - log(e + e^2 + e^3); uniform over 3: -log 3
    expected = torch.tensor([[3.0 - torch.log(torch.exp(torch.tensor([1.0, 2.0, 3.0])).sum()).item(),
                              -torch.log(torch.tensor(3.0)).item()]])
    assert torch.allclose(logprobs_from_logits(logits, labels), expected, atol=1e-6)


def _autograd_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The plain expression: float32 rows, gather minus logsumexp, differentiated by autograd."""
    def fn(lg, lab):
        return torch.gather(lg, -1, lab.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(lg, dim=-1)

    if logits.dtype == torch.float32:
        return fn(logits, labels)
    return torch.stack([fn(logits[i].float(), labels[i]) for i in range(logits.shape[0])])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(4, 9, 300), (1, 1, 5), (2, 3, 7)])
def test_fused_logprob_backward_is_bit_identical_to_autograd(dtype, shape):
    g = torch.Generator().manual_seed(sum(shape))
    base = (3 * torch.randn(*shape, generator=g)).to(dtype)
    labels = torch.randint(0, shape[-1], shape[:-1], generator=g)
    labels.view(-1)[0] = shape[-1] - 1  # the last vocabulary entry too
    weights = torch.randn(shape[:-1], generator=g)
    fast_in, plain_in = base.clone().requires_grad_(), base.clone().requires_grad_()
    fast, plain = logprobs_from_logits(fast_in, labels), _autograd_logprobs(plain_in, labels)
    assert fast.dtype == torch.float32 and torch.equal(fast, plain)
    (fast * weights).sum().backward()
    (plain * weights).sum().backward()
    assert fast_in.grad.dtype == dtype and torch.equal(fast_in.grad, plain_in.grad)
    # the gradient is softmax minus one-hot, scaled: hand check on one position (float32 only)
    if dtype == torch.float32:
        p = torch.softmax(base[0, 0], -1)
        expect = -weights[0, 0] * p
        expect[labels[0, 0]] += weights[0, 0]
        assert torch.allclose(fast_in.grad[0, 0], expect, atol=1e-6)
    with torch.inference_mode():  # the no-grad passes
        assert torch.equal(logprobs_from_logits(base, labels), plain.detach())


@pytest.mark.parametrize("max_norm", [1e-3, 1e30])
def test_clip_gradients_is_bit_identical_to_accelerate(tiny_t5_dir, max_norm):
    tr = _trainer(tiny_t5_dir, max_grad_norm=max_norm)
    params = [p for p in tr.model.parameters() if p.requires_grad]
    torch.manual_seed(3)
    grads = [torch.randn_like(p) for p in params]
    results = []
    for clip in (lambda: tr.acc.clip_grad_norm_(tr.model.parameters(), max_norm), tr._clip_gradients):
        for p, g in zip(params, grads):
            p.grad = g.clone()
        norm = clip()
        results.append((float(norm), [p.grad.clone() for p in params]))
    (plain_norm, plain_grads), (fast_norm, fast_grads) = results
    assert fast_norm == plain_norm
    assert all(torch.equal(a, b) for a, b in zip(plain_grads, fast_grads))
    scaled = not torch.equal(fast_grads[0], grads[0])
    assert scaled == (max_norm < plain_norm)  # 1e-3 clips, 1e30 leaves the gradients as they were


def test_logged_entropy_is_the_rollout_policy_entropy(tiny_t5_dir):
    tr = _trainer(tiny_t5_dir)
    ro = _rollout(tr)
    with torch.no_grad():
        logits, _ = forward_response(tr.unwrapped.lm, True, ro.query_ids, ro.query_mask, ro.response_ids,
                                     ro.response_mask)
        p = torch.softmax(logits, -1)
        plain = masked_mean(-(p * torch.log(p)).sum(-1), ro.response_mask)
    stats = tr.learn(ro)
    assert stats["policy/entropy"] == pytest.approx(float(plain), abs=1e-4)


def test_fused_adamw_matches_per_tensor_adamw():
    torch.manual_seed(0)
    init = [torch.randn(7, 5), torch.randn(5), torch.randn(3, 3)]
    grads = [[torch.randn_like(p) for p in init] for _ in range(5)]
    if not fused_adam_supported([torch.nn.Parameter(p.clone()) for p in init]):
        pytest.skip("torch has no fused AdamW here")
    results = []
    for fused in (None, True):
        params = [torch.nn.Parameter(p.clone()) for p in init]
        opt = torch.optim.AdamW(params, lr=1e-2, eps=1e-8, weight_decay=0.0, fused=fused)
        for step in grads:
            for p, g in zip(params, step):
                p.grad = g.clone()
            opt.step()
        results.append([p.detach() for p in params])
    for plain, fast in zip(*results):
        assert torch.allclose(plain, fast, atol=1e-6)


@pytest.mark.parametrize("fused", [None, True])
def test_adam_state_allocated_up_front_gives_bit_identical_updates(fused):
    torch.manual_seed(0)
    init = [torch.randn(7, 5), torch.randn(5), torch.randn(3, 3)]
    grads = [[torch.randn_like(p) for p in init] for _ in range(4)]
    results = []
    for allocate in (False, True):
        params = [torch.nn.Parameter(p.clone()) for p in init]
        params[2].grad = torch.full_like(params[2], 7.0)  # a gradient already there must survive
        opt = torch.optim.AdamW(params, lr=1e-2, eps=1e-8, weight_decay=0.0, fused=fused)
        if allocate:
            assert allocate_adam_state(opt)
            assert torch.equal(params[2].grad, torch.full_like(params[2], 7.0))
            assert params[0].grad is None
            for p in params:
                st = opt.state[p]
                assert float(st["step"]) == 0.0 and not st["exp_avg"].any() and not st["exp_avg_sq"].any()
        else:
            assert len(opt.state) == 0
        for step in grads:
            for p, g in zip(params, step):
                p.grad = g.clone()
            opt.step()
        results.append(([p.detach().clone() for p in params], opt.state_dict()["state"]))
    (lazy_p, lazy_s), (early_p, early_s) = results
    assert all(torch.equal(a, b) for a, b in zip(lazy_p, early_p))
    for i in lazy_s:
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(lazy_s[i][key], early_s[i][key]), (i, key)
    assert not allocate_adam_state(torch.optim.SGD([torch.nn.Parameter(torch.ones(2))], lr=0.1))


def test_trainer_allocates_adam_state_before_the_first_step(tiny_t5_dir):
    tr = _trainer(tiny_t5_dir)
    params = [p for g in tr.optimizer.param_groups for p in g["params"]]
    assert params and all(len(tr.optimizer.state[p]) == 3 for p in params)
    assert all(p.grad is None for p in params)


def test_non_finite_gradient_skips_the_update_like_the_per_gradient_check(tiny_t5_dir):
    tr = _trainer(tiny_t5_dir)
    ro = _rollout(tr)
    before = {n: p.detach().clone() for n, p in tr.unwrapped.named_parameters()}
    # One gradient entry becomes NaN after every backward pass: each minibatch update must be skipped.
    head = tr.unwrapped.value_head.summary.weight
    handle = head.register_hook(lambda g: g.index_fill(1, torch.tensor([0]), float("nan")))
    try:
        stats = tr.learn(ro)
    finally:
        handle.remove()
    assert stats["ppo/bad_updates"] == 2 and stats["ppo/updates"] == 0
    for n, p in tr.unwrapped.named_parameters():
        assert torch.equal(p.detach(), before[n]), n
    # the plain check would have said the same: the total norm is non-finite iff some entry is
    g = torch.ones(3, 3)
    g[1, 1] = float("nan")
    assert not torch.isfinite(g).all() and not torch.isfinite(torch.linalg.vector_norm(g))


def test_bf16_reference_is_bit_identical_to_autocast_of_the_float32_copy(tiny_policy_dir):
    """The reference's linear weights stored in bfloat16 give exactly the logits autocast gives."""
    tr = _trainer(tiny_policy_dir, mixed_precision="bf16")
    ro = _rollout(tr)
    plain = load_policy_model(str(tiny_policy_dir)).model.eval()
    n_linear = sum(isinstance(m, torch.nn.Linear) for m in tr.ref_model.modules())
    stored = sum(m.weight.dtype == torch.bfloat16 for m in tr.ref_model.modules() if isinstance(m, torch.nn.Linear))
    # T5's projections are nn.Linear; GPT-2's are Conv1D (left as they are) beside a tied head
    assert stored == (n_linear - 1 if tr.lp.is_seq2seq else 0)
    # tied LM heads stay float32 together with their embedding
    for m in tr.ref_model.modules():
        if isinstance(m, torch.nn.Embedding):
            assert m.weight.dtype == torch.float32
    args = (ro.query_ids, ro.query_mask, ro.response_ids, ro.response_mask)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        want, _ = forward_response(plain, tr.lp.is_seq2seq, *args)
        got, _ = forward_response(tr.ref_model, tr.lp.is_seq2seq, *args)
    assert torch.equal(want, got)
    assert torch.equal(tr._reference_forward(ro)[0], ro.ref_logprobs)


def test_store_linear_weights_bf16_skips_a_tied_head():
    emb = torch.nn.Embedding(10, 4)
    head = torch.nn.Linear(4, 10, bias=False)
    head.weight = emb.weight
    model = torch.nn.ModuleDict({"emb": emb, "head": head, "other": torch.nn.Linear(4, 4)})
    assert store_linear_weights_bf16(model) == 1
    assert model["other"].weight.dtype == torch.bfloat16 and head.weight.dtype == torch.float32


def test_fused_gelu_matches_gelu_new(tmp_path, tiny_gpt2_dir):
    """The fused kernel is swapped in for every gelu_new module and changes the logits by < 1e-5."""
    from conftest import make_tokenizer
    from transformers import T5Config, T5ForConditionalGeneration
    from transformers.activations import GELUTanh, NewGELUActivation

    x = torch.linspace(-8, 8, 10_001)
    assert (GELUTanh()(x) - NewGELUActivation()(x)).abs().max() < 1e-6
    torch.manual_seed(0)  # FLAN-T5's feed-forward: gated gelu_new
    cfg = T5Config(vocab_size=64, d_model=32, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=2,
                   d_kv=16, feed_forward_proj="gated-gelu", decoder_start_token_id=0, pad_token_id=0,
                   eos_token_id=1)
    T5ForConditionalGeneration(cfg).save_pretrained(tmp_path / "t5")
    make_tokenizer(append_eos=True).save_pretrained(tmp_path / "t5")
    for path in (tmp_path / "t5", tiny_gpt2_dir):
        fast = load_policy_model(str(path))
        plain = load_policy_model(ModelSettings(name_or_path=str(path), fused_activations=False,
                                                attn_implementation="eager"))
        kinds = lambda m: {type(x).__name__ for x in m.modules()}  # noqa: E731
        assert "GELUTanh" in kinds(fast.model) and "NewGELUActivation" not in kinds(fast.model)
        assert "NewGELUActivation" in kinds(plain.model)
        q, qm = tokenize_prompts(fast.tokenizer, PROMPTS, 32)
        r = torch.randint(5, 50, (len(PROMPTS), 6))
        with torch.no_grad():
            a, _ = forward_response(fast.model.eval(), fast.is_seq2seq, q, qm, r, torch.ones_like(r).float())
            b, _ = forward_response(plain.model.eval(), plain.is_seq2seq, q, qm, r, torch.ones_like(r).float())
        assert (a - b).abs().max() < ATOL


def test_t5_loads_with_eager_attention_that_matches_sdpa(tiny_t5_dir):
    auto = load_policy_model(str(tiny_t5_dir))
    sdpa = load_policy_model(ModelSettings(name_or_path=str(tiny_t5_dir), attn_implementation="sdpa"))
    assert auto.model.config._attn_implementation == "eager"
    assert sdpa.model.config._attn_implementation == "sdpa"
    q, qm = tokenize_prompts(auto.tokenizer, PROMPTS, 32)
    r = torch.randint(5, 50, (len(PROMPTS), 6))
    with torch.no_grad():
        a, _ = forward_response(auto.model.eval(), True, q, qm, r, torch.ones_like(r).float())
        b, _ = forward_response(sdpa.model.eval(), True, q, qm, r, torch.ones_like(r).float())
    assert (a - b).abs().max() < ATOL


def _tiny_bart_dir(path):
    from conftest import VOCAB, make_tokenizer
    from transformers import BartConfig, BartForConditionalGeneration

    torch.manual_seed(0)
    cfg = BartConfig(vocab_size=len(VOCAB), d_model=32, encoder_layers=2, decoder_layers=2,
                     encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                     decoder_ffn_dim=64, pad_token_id=0, eos_token_id=1, bos_token_id=3,
                     decoder_start_token_id=1, forced_eos_token_id=None)
    BartForConditionalGeneration(cfg).save_pretrained(path)
    make_tokenizer(append_eos=True).save_pretrained(path)
    return path


@pytest.mark.parametrize("arch", ["t5", "bart"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_static_kv_cache_decodes_like_the_growing_cache(tmp_path, tiny_t5_dir, arch, dtype):
    """The fixed-length cache (``generation.kv_cache: auto`` on a bf16 encoder-decoder on the CPU) gives
    the same greedy tokens and the same logits as the cache that grows by one position per token."""
    from detoxrl.models.policy import generation_config

    path = tiny_t5_dir if arch == "t5" else _tiny_bart_dir(tmp_path / "bart")
    lp = load_policy_model(str(path))
    lp.model.to(dtype).eval()
    q, qm = tokenize_prompts(lp.tokenizer, PROMPTS, 32)
    out = {}
    for static in (False, True):
        gcfg = generation_config(GenerationSettings(max_new_tokens=10, min_new_tokens=10, do_sample=False),
                                 lp, static_cache=static)
        gcfg.output_logits, gcfg.return_dict_in_generate = True, True
        with torch.no_grad():
            res = lp.model.generate(input_ids=q, attention_mask=qm, generation_config=gcfg)
        cache = res.get("cache", res.get("past_key_values"))
        assert type(cache.self_attention_cache).__name__ == ("StaticCache" if static else "DynamicCache")
        out[static] = (res.sequences, torch.stack(res.logits, 1).float())
    assert torch.equal(out[False][0], out[True][0])
    assert out[False][1].shape[1] == 10
    # float32: the same up to summation order; bfloat16: one rounding step of the logits at most
    tol = 1e-5 if dtype == torch.float32 else 2 ** -7 * out[False][1].abs().max().item()
    assert (out[False][1] - out[True][1]).abs().max() <= tol


def test_static_kv_cache_auto_choice(tiny_t5_dir, tiny_gpt2_dir):
    from detoxrl.models.policy import static_kv_cache

    auto, static, dynamic = (GenerationSettings(kv_cache=k) for k in ("auto", "static", "dynamic"))
    t5 = load_policy_model(str(tiny_t5_dir)).model
    gpt2 = load_policy_model(str(tiny_gpt2_dir)).model
    assert not static_kv_cache(auto, t5)  # float32: no per-shape oneDNN kernels to save
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert static_kv_cache(auto, t5)
        assert not static_kv_cache(auto, gpt2)  # decoder-only models keep the growing cache
        assert not static_kv_cache(dynamic, t5)
    t5.to(torch.bfloat16)
    assert static_kv_cache(auto, t5)
    lora = load_policy_model(ModelSettings(name_or_path=str(tiny_t5_dir), dtype="bfloat16",
                                           lora=LoraSettings(enabled=True, r=2, target_modules=["q", "v"])),
                             apply_lora=True).model
    assert static_kv_cache(auto, lora)  # peft's wrapper over a bf16 T5
    assert static_kv_cache(static, gpt2) and not static_kv_cache(dynamic, t5)


def _bucket_trainer(path, length_multiple: int | None, dtype: str = "float32", mixed_precision: str = "no"):
    set_seed(0)
    lp = load_policy_model(ModelSettings(name_or_path=str(path), dtype=dtype))
    settings = PPOSettings(steps=2, batch_size=8, mini_batch_size=8, ppo_epochs=1, learning_rate=1e-3,
                           kl=KLSettings(init_coef=0.05, adaptive=False), score_norm=False,
                           length_multiple=length_multiple, mixed_precision=mixed_precision,
                           generation=GenerationSettings(max_new_tokens=6))
    return PPOTrainer(settings, lp, _reward, seed=0)


def test_length_multiple_pads_with_masked_columns_that_change_no_numbers(tiny_t5_dir):
    """Prompts and responses padded to multiples of 16 (``ppo.length_multiple``, the default for bf16
    encoder-decoders on the CPU) give the same rollout and the same loss as the unpadded batch."""
    plain, padded = _bucket_trainer(tiny_t5_dir, 1), _bucket_trainer(tiny_t5_dir, 16)
    a, b = _rollout(plain), _rollout(padded)
    assert a.query_ids.shape[1] % 16 and b.query_ids.shape[1] == 16
    assert a.response_ids.shape[1] % 16 and b.response_ids.shape[1] == 16
    w = a.response_ids.shape[1]
    assert torch.equal(a.response_ids, b.response_ids[:, :w]) and torch.equal(a.has_eos, b.has_eos)
    assert not b.response_mask[:, w:].any()
    for name in ("logprobs", "ref_logprobs", "values", "rewards", "advantages", "returns"):
        x, y = getattr(a, name), getattr(b, name)
        assert torch.allclose(x, y[:, :w], atol=ATOL), name
    assert not b.advantages[:, w:].any() and not b.returns[:, w:].any()
    mb = b.select(torch.tensor([0, 1]))  # a minibatch's width is rounded up too (at most the rollout's)
    assert mb.response_ids.shape[1] == 16
    sa, sb = plain.learn(a), padded.learn(b)  # one minibatch: its loss comes before any update
    assert abs(sa["policy/loss"] - sb["policy/loss"]) < ATOL
    assert abs(sa["value/loss"] - sb["value/loss"]) < ATOL


def test_length_multiple_default(tiny_t5_dir, tiny_gpt2_dir):
    assert _bucket_trainer(tiny_t5_dir, None).length_multiple == 1  # float32: MKL, no kernels per shape
    assert _bucket_trainer(tiny_t5_dir, None, dtype="bfloat16").length_multiple == 16
    assert _bucket_trainer(tiny_t5_dir, None, mixed_precision="bf16").length_multiple == 16
    assert _bucket_trainer(tiny_gpt2_dir, None, dtype="bfloat16").length_multiple == 1
    assert _bucket_trainer(tiny_t5_dir, 8, dtype="bfloat16").length_multiple == 8


@pytest.mark.parametrize("arch", ["t5", "gpt2"])
def test_sft_batches_padded_to_a_multiple_give_the_same_loss(tiny_t5_dir, tiny_gpt2_dir, arch):
    """``sft.length_multiple``: the extra columns are masked (label -100), so the loss and its gradient
    are those of the unpadded batch."""
    from detoxrl.stages.sft import Pair, collate, encode, sequence_loss

    lp = load_policy_model(str(tiny_t5_dir if arch == "t5" else tiny_gpt2_dir))
    lp.model.eval()
    items = encode(lp, [Pair(p, " ".join(p.split()[:2])) for p in PROMPTS], 32, 8)
    grads = {}
    for multiple in (1, 16):
        batch = collate(lp, items, "cpu", multiple)
        assert all(v.shape[1] % 16 == 0 for v in batch.values()) == (multiple == 16)
        lp.model.zero_grad(set_to_none=True)
        loss = sequence_loss(lp, batch)
        loss.backward()
        grads[multiple] = (float(loss.detach()), torch.cat([p.grad.flatten() for p in lp.model.parameters()
                                                   if p.grad is not None]))
    assert abs(grads[1][0] - grads[16][0]) < ATOL
    assert torch.allclose(grads[1][1], grads[16][1], atol=ATOL)
