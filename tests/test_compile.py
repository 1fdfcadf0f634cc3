"""The PPO trainer under accelerate's inductor backend (``accelerate launch --dynamo_backend inductor``).

The trainer hands its policy-with-value-head to ``accelerator.prepare``, so accelerate's dynamo setting
compiles the model the PPO update passes run through. This checks that the compiled model computes the
same logprobs, values and gradients as the eager one, that checkpoints keep the eager names, and that a
PPO update runs on it. Inductor generates C++ on the CPU: skipped without a compiler.
"""

from __future__ import annotations

import pytest
import torch
from test_perf_equivalence import _rollout, _trainer

from detoxrl.rl.core import logprobs_from_logits

# Not in `make test-cpus`: compiling with inductor takes minutes per kernel set; `make test` runs it.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def inductor_works():
    """Skip (with the reason) where inductor cannot build a kernel here: no C++ compiler, or no headers.

    Compiles in this process, one kernel at a time: inductor's default pool of compile workers would
    put more busy processes on the machine than the suite's two, and the timing-based kill in
    ``test_resume`` measures its reference run while this test may be compiling."""
    import torch._inductor.config as inductor_config

    with inductor_config.patch(compile_threads=1):
        try:
            torch.compile(lambda x: x * 2 + 1)(torch.ones(3))
        except Exception as e:  # noqa: BLE001 - whatever the toolchain raises, the reason is printed
            pytest.skip(f"torch.compile does not work on this machine: {type(e).__name__}: {str(e)[:200]}")
        yield


@pytest.fixture
def fresh_accelerate_state():
    """accelerate keeps one process-wide state, and its dynamo setting is the first Accelerator's: start
    and end clean so that neither the other tests' Accelerators nor this one's leak into each other."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def _compiled_trainer(path):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)  # else the eager trainer's state (no dynamo) stays
    return _trainer(path, accelerator=Accelerator(cpu=True, dynamo_backend="inductor"))


def test_compiled_update_matches_eager(tiny_t5_dir, inductor_works, fresh_accelerate_state):
    import torch._dynamo

    torch._dynamo.reset()
    eager = _trainer(tiny_t5_dir)
    ro = _rollout(eager)
    compiled = _compiled_trainer(tiny_t5_dir)
    assert type(compiled.model).__name__ == "OptimizedModule"  # accelerate did compile it
    mb = ro.select(torch.arange(4))
    args = (mb.query_ids, mb.query_mask, mb.response_ids, mb.response_mask)
    outs = []
    for tr in (eager, compiled):
        logits, values = tr.model(*args)
        lp = logprobs_from_logits(logits, mb.response_ids)
        (lp.sum() + values.sum()).backward()  # compiles (and runs) the backward graph too
        grads = {n: p.grad.clone() for n, p in tr.module.named_parameters() if p.grad is not None}
        tr.optimizer.zero_grad(set_to_none=True)
        outs.append((lp.detach(), values.detach(), grads))
    (lp_e, v_e, g_e), (lp_c, v_c, g_c) = outs
    assert torch.allclose(lp_e, lp_c, atol=1e-5)
    assert torch.allclose(v_e, v_c, atol=1e-5)
    assert g_e.keys() == g_c.keys() and len(g_e) > 10
    for n in g_e:
        assert torch.allclose(g_e[n], g_c[n], atol=1e-5, rtol=1e-4), n
    # Checkpoints, generation and the no-grad passes see the module itself: the same names (no
    # ``_orig_mod.`` prefix), so a checkpoint keeps the float32 masters and resumes in an eager run.
    assert type(compiled.unwrapped).__name__ == "PolicyWithValue"
    assert compiled.trainable_state().keys() == eager.trainable_state().keys()
    # A whole PPO update on the compiled model trains and logs finite losses.
    before = [p.detach().clone() for p in compiled.module.parameters()]
    stats = compiled.learn(ro)
    assert stats["ppo/updates"] == 2 and stats["ppo/bad_updates"] == 0
    assert all(torch.isfinite(torch.tensor(stats[k])) for k in ("policy/loss", "value/loss"))
    assert any(not torch.equal(b, p) for b, p in zip(before, compiled.module.parameters()))
