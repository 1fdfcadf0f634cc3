"""Red teaming: find the prompts that make a policy toxic (after Perez et al., 2022, "Red Teaming Language
Models with Language Models"), and turn what is found into training data.

- :mod:`~detoxrl.redteam.mutations`: the perturbations of a dialogue (inserted hostile turns, spacing,
  repeated letters, look-alike letters, quoting, negation, moving a turn);
- :mod:`~detoxrl.redteam.target`: the attacked policy and the judges, with the generation count that
  every method's budget is counted in;
- :mod:`~detoxrl.redteam.search`: the perturbation search (a small evolutionary loop);
- :mod:`~detoxrl.redteam.cases`: attempts, the success rule, the per-method summary;
- :mod:`~detoxrl.redteam.diversity`: distinct-n and self-BLEU of the successful prompts.

The package builds on the judges, models, data and evaluation; only the ``redteam`` stage, the pipeline
and the CLI use it.
"""
