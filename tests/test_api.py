"""The public Python API: what the README shows runs as written, and the names it promises exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SLOW_MARK = "# runs the whole pipeline"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_has_a_python_api_example():
    blocks = _python_blocks()
    assert any("PPOTrainer" in b and not b.startswith(SLOW_MARK) for b in blocks), "no runnable API example"


@pytest.mark.parametrize("i", range(len(_python_blocks())))
def test_readme_python_block_runs(i, capsys):
    block = _python_blocks()[i]
    if block.startswith(SLOW_MARK):
        # the pipeline example takes minutes: check that it compiles and names real functions
        compile(block, f"README block {i}", "exec")
        import detoxrl
        from detoxrl.stages import eval as eval_stage
        from detoxrl.stages import ppo

        assert callable(detoxrl.run) and callable(detoxrl.load_config) and ppo.run and eval_stage.run
        return
    exec(compile(block, f"README block {i}", "exec"), {"__name__": "__readme__"})
    printed = capsys.readouterr().out.split()
    if "PPOTrainer" in block:  # the custom-reward loop printed the step's mean reward and KL
        reward, kl = (float(x) for x in printed[-2:])
        assert 0.0 <= reward <= 1.0 and kl == kl


def test_public_names():
    import detoxrl

    for name in detoxrl.__all__:
        assert getattr(detoxrl, name) is not None, name
    with pytest.raises(AttributeError):
        detoxrl.no_such_name  # noqa: B018
