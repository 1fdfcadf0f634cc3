"""A constitution of written principles, checked on every response, driving self-critique and revision.

- :mod:`~detoxrl.constitution.principles`: the constitution file (principles, critique and revision
  requests, checks) and its validation;
- :mod:`~detoxrl.constitution.checks`: one check per kind (judge, lexicon, pattern, faithfulness,
  self-critique, all/any) and :class:`~detoxrl.constitution.checks.PrincipleChecker`;
- :mod:`~detoxrl.constitution.critic`: the policy answering critique requests (yes/no probabilities),
  revising and resampling;
- :mod:`~detoxrl.constitution.revise`: revision by rule-based rewrite, resampling or the policy;
- :mod:`~detoxrl.constitution.records`: accepted revisions as preference and SFT data;
- :mod:`~detoxrl.constitution.engine`: the check-and-revise loop;
- :mod:`~detoxrl.constitution.reward`: ``with_constitution`` — penalties and per-principle logs in PPO;
- :mod:`~detoxrl.constitution.generate`: the same loop at inference time (``detoxrl generate``);
- :mod:`~detoxrl.constitution.prompts`: the self-critique and self-revision requests, P("yes");
- :mod:`~detoxrl.constitution.tasks`: critique and revision examples for multi-task SFT;
- :mod:`~detoxrl.constitution.critique_eval`: the self-critique as a classifier (``detoxrl critique-eval``);
- :mod:`~detoxrl.constitution.sl_cai`: SL-CAI's critique → revision → acceptance loop (the
  ``constitution`` stage).
"""
