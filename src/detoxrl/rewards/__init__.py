"""Judges, the composite reward, reward-model training and judge audits.

- :mod:`~detoxrl.rewards.base`: ``JudgeResult`` and the ``Judge`` interface;
- :mod:`~detoxrl.rewards.hf`, :mod:`~detoxrl.rewards.lexicon`, :mod:`~detoxrl.rewards.profanity`:
  the judges; :mod:`~detoxrl.rewards.presets` and :mod:`~detoxrl.rewards.build` make them from settings;
- :mod:`~detoxrl.rewards.composite`: the composite reward (its formula is documented there);
- :mod:`~detoxrl.rewards.train`: ``train_rm`` (rankings → pairwise loss, or labelled text), on the data
  that :mod:`~detoxrl.rewards.rm_data` makes (preference pairs, class ids, length-bucketed batches);
- :mod:`~detoxrl.rewards.judge_eval`: accuracy, F1 and AUC of a judge on a labelled file.

Import what you need from its module: ``from detoxrl.rewards.composite import CompositeReward``.
"""
