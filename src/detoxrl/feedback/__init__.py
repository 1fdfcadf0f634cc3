"""Human feedback: candidates for people to rank, the local labelling page, the rankings it writes, and
labels made in other tools.

- :mod:`~detoxrl.feedback.candidates`: ``detoxrl candidates`` — N distinct sampled responses per prompt,
  scored by every judge → ``labels/batch.jsonl`` (:mod:`~detoxrl.feedback.batch`) and
  ``labels/instructions.md`` (:mod:`~detoxrl.feedback.instructions`);
- :mod:`~detoxrl.feedback.server`: ``detoxrl label`` — the page on 127.0.0.1 (``static/``) that ranks them;
- :mod:`~detoxrl.feedback.rankings`: the ``labels/rankings.jsonl`` rows and the checks on a submission;
- :mod:`~detoxrl.feedback.store`: saving each submission durably, and where each labeller stopped;
- :mod:`~detoxrl.feedback.labels_io`: ``import-labels`` and ``export-labels``, over
  :mod:`~detoxrl.feedback.label_studio` and :mod:`~detoxrl.feedback.argilla` (each tool's formats).

The rankings format itself (what ``train-rm`` reads, ``docs/rankings.md``) and labeller agreement live in
:mod:`detoxrl.data` (``rankings``, ``agreement``): ``train-rm`` reads them from :mod:`detoxrl.rewards`,
which must not depend on this package (it builds on the judges). The page and its files are documented in
``docs/labelling.md``.
"""
