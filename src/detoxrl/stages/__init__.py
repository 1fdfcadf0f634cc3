"""The pipeline's stages, one module each: ``prepare → sft → candidates → labels → train-rm →
constitution → ppo → redteam → eval → report`` (``candidates`` and ``labels`` only when
``labels.enabled``: the human-feedback loop; ``constitution`` (SL-CAI) only when ``constitution.enabled``;
``redteam`` only where ``redteam.enabled``).

Every stage module has ``run(cfg, ...) -> Path``: it reads the validated config, writes into the one run
folder and returns what it wrote. Devices and accelerate follow one rule for all of them
(:mod:`detoxrl.stages.device`). :mod:`detoxrl.pipeline` only orders them.
"""

STAGES = ("prepare", "sft", "candidates", "labels", "train-rm", "constitution", "ppo", "redteam", "eval",
          "report")
