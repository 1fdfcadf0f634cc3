"""Language models as policies, for both shapes (encoder-decoder and decoder-only).

- :mod:`~detoxrl.models.policy`: the overview of the two shapes and every public name in one place;
- :mod:`~detoxrl.models.loading`: :func:`~detoxrl.models.loading.load_policy_model`, LoRA, fused GELUs;
- :mod:`~detoxrl.models.generation`: prompts to responses (seeded sampling);
- :mod:`~detoxrl.models.forward`: logits aligned with response tokens, the value head;
- :mod:`~detoxrl.models.saving`: plain ``save_pretrained`` folders;
- :mod:`~detoxrl.models.cpu_shapes`: static KV cache and padding for low-precision CPU runs;
- :mod:`~detoxrl.models.tokens`: response masks from EOS.

``models`` builds on ``config`` and ``errors`` only; the PPO code in :mod:`detoxrl.rl` builds on it.
"""

from detoxrl.config import ModelSettings
from detoxrl.models.policy import LoadedPolicy, load_policy_model, save_policy, tokenize_prompts

__all__ = ["LoadedPolicy", "ModelSettings", "load_policy_model", "save_policy", "tokenize_prompts"]
