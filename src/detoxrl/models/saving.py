"""Saving a policy as a plain ``save_pretrained`` folder (LoRA merged; the adapter and value head beside it)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from safetensors.torch import save_file
from torch import nn


def is_peft(model) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "disable_adapter")


def save_policy(model, tokenizer, out_dir: str | Path, *, value_head: nn.Module | None = None,
                base_name: str | None = None, extra: dict | None = None) -> None:
    """Write a normal ``save_pretrained`` folder that plain transformers loads.

    With LoRA, the merged weights go to ``out_dir`` and the adapter alone to ``out_dir/adapter``
    (its ``adapter_config.json`` names the base model). The value head, needed only to resume, is
    saved beside them as ``value_head.safetensors``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if is_peft(model):
        model.save_pretrained(out / "adapter", safe_serialization=True)
        merged = _merged_copy(model)
        merged.save_pretrained(out, safe_serialization=True)
    else:
        model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    if value_head is not None:
        save_file({k: v.detach().cpu().contiguous() for k, v in value_head.state_dict().items()},
                  str(out / "value_head.safetensors"))
    note = {"saved_by": "detoxrl", "base_model": base_name, **(extra or {})}
    (out / "detoxrl.json").write_text(json.dumps(note, indent=2) + "\n", encoding="utf-8")


def _merged_copy(peft_model):
    """Merge LoRA weights into a copy of the base model without touching the training model."""
    clone = copy.deepcopy(peft_model)
    return clone.merge_and_unload()
