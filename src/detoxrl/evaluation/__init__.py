"""Evaluation (``eval``) and the run's report (``report``).

- :mod:`~detoxrl.evaluation.evaluate`: the eval stage, before against after (:func:`run_eval`);
- :mod:`~detoxrl.evaluation.generation`, :mod:`~detoxrl.evaluation.judging`: its responses and judges;
- :mod:`~detoxrl.evaluation.summary`, :mod:`~detoxrl.evaluation.metrics`: the figures of ``eval.json``;
- :mod:`~detoxrl.evaluation.table`: ``eval_table.csv``; :mod:`~detoxrl.evaluation.printing`: the console;
- :mod:`~detoxrl.evaluation.report` (with ``report_sections``, ``report_plots``, ``report_html``):
  ``report.html``; :mod:`~detoxrl.evaluation.model_card`: the model card beside the policy.
"""
