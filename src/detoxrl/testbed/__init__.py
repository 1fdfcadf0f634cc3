"""The embedded offline testbed that ``prepare`` builds (:mod:`~detoxrl.testbed.build`).

- :mod:`~detoxrl.testbed.topics`, :mod:`~detoxrl.testbed.corpus`: the synthetic DialogSum-style corpus;
- :mod:`~detoxrl.testbed.lexicon`: its offensive vocabulary (read from ``better_profanity``'s list);
- :mod:`~detoxrl.testbed.tokenizer`, :mod:`~detoxrl.testbed.models`: a small BPE tokenizer and the
  untrained tiny T5 policy and RoBERTa judge.
"""
