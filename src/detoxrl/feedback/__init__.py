"""Human feedback: candidates for people to rank, the local labelling page, the rankings it writes.

- :mod:`~detoxrl.feedback.candidates`: ``detoxrl candidates`` — N distinct sampled responses per prompt,
  scored by every judge → ``labels/batch.jsonl`` (:mod:`~detoxrl.feedback.batch`) and
  ``labels/instructions.md`` (:mod:`~detoxrl.feedback.instructions`);
- :mod:`~detoxrl.feedback.server`: ``detoxrl label`` — the page on 127.0.0.1 (``static/``) that ranks them;
- :mod:`~detoxrl.feedback.rankings`: the ``labels/rankings.jsonl`` rows and the checks on a submission;
- :mod:`~detoxrl.feedback.store`: saving each submission durably, and where each labeller stopped.

The formats are documented in ``docs/labelling.md``; ``train-rm`` (``train_rm.mode: rankings``) reads the
rankings.
"""
