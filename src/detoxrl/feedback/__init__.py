"""Human feedback: the tools around the rankings format (:mod:`detoxrl.data.rankings`).

- :mod:`~detoxrl.feedback.labels_io`: ``import-labels`` and ``export-labels``;
- :mod:`~detoxrl.feedback.label_studio`, :mod:`~detoxrl.feedback.argilla`: each tool's export and
  import formats.

The rankings format itself and labeller agreement live in :mod:`detoxrl.data` (``rankings``,
``agreement``): ``train-rm`` reads them from :mod:`detoxrl.rewards`, which must not depend on this
package (its labelling stages use the judges).
"""
