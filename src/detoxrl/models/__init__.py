"""detoxrl.models: policy loading (seq2seq or causal, LoRA), value head, generation and saving."""

from detoxrl.config import ModelSettings
from detoxrl.models.policy import LoadedPolicy, load_policy_model, save_policy, tokenize_prompts

__all__ = ["LoadedPolicy", "ModelSettings", "load_policy_model", "save_policy", "tokenize_prompts"]
