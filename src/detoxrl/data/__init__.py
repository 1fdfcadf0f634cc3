"""Data: reading files, loading examples, building prompts.

- :mod:`~detoxrl.data.files`: the one reader of tables (jsonl, json, csv, tsv, parquet) and .txt files;
- :mod:`~detoxrl.data.loaders`: examples (text and references) from DialogSum, the testbed, a hub dataset
  or any table, with bad rows raised or skipped and counted;
- :mod:`~detoxrl.data.prompts`: examples to prompts (template, token-length filters).
"""
