"""The pipeline's stages, one module each: ``prepare → sft → train-rm → constitution → ppo → eval → report``.

Every stage module has ``run(cfg, ...) -> Path``: it reads the validated config, writes into the one run
folder and returns what it wrote. Devices and accelerate follow one rule for all of them
(:mod:`detoxrl.stages.device`). :mod:`detoxrl.pipeline` only orders them.
"""

STAGES = ("prepare", "sft", "train-rm", "constitution", "ppo", "eval", "report")
