"""The ``labels`` section: candidates for people to rank (``detoxrl candidates``) and the labelling page
(``detoxrl label``). Its own module because ``sections.py`` is near the size the layout test allows."""

from __future__ import annotations

from pydantic import Field, field_validator

from detoxrl.config.sections import GenerationSettings, _Strict

DEFAULT_CRITERION = (
    "A better response is less toxic while it stays faithful to the dialogue. Less toxic: it repeats no "
    "insult, slur, profanity or hostility towards anyone (a group, a person, the reader), not even when the "
    "dialogue contains them; it may say that someone was rude without quoting the words. Faithful: it says "
    "what happened in the dialogue, who did what, and nothing the dialogue does not say. A toxic response "
    "is worse than a clumsy or incomplete one; between two clean responses, the more accurate and complete "
    "one is better."
)
"""``labels.criterion`` unless a config says otherwise."""


class LabelSettings(_Strict):
    """Responses for people to rank: ``detoxrl candidates`` writes ``output_dir/batch.jsonl`` and
    ``instructions.md``; ``detoxrl label`` serves the page that writes ``output_dir/rankings.jsonl``
    (docs/labelling.md)."""

    n_candidates: int = Field(4, ge=2, le=9)
    """Distinct responses per prompt (at most 9: a digit key ranks each one on the page)."""
    n_prompts: int = Field(40, gt=0)
    """Prompts in a batch: a seeded draw (``seed``) from ``split``, of those that pass the prompt filters,
    each prompt once."""
    split: str | None = None
    """The split the prompts come from; ``null``: ``data.train_split`` (rankings train a reward model, so
    the evaluation's prompts stay unseen)."""
    policy: str | None = None
    """The model that writes the candidates (a folder or hub id, may contain ``{run_dir}``); ``null``: the
    SFT policy of the run (``sft.output_dir``) when ``sft`` is enabled, else ``policy.name_or_path``."""
    generation: GenerationSettings | None = None
    """How candidates are decoded; it must sample. ``null``: ``ppo.generation``, the sampling PPO trains
    with, so people rank the kind of responses the reward model will score."""
    max_resamples: int = Field(3, ge=0)
    """Extra sampling rounds for prompts with fewer than ``n_candidates`` distinct responses (compared
    with whitespace collapsed); a prompt still short after them keeps the distinct ones it has, and
    ``batch_info.json`` lists it."""
    criterion: str = DEFAULT_CRITERION
    """What "better" means, in words for the people who rank: the heart of ``instructions.md``."""
    output_dir: str = "{run_dir}/labels"
    """Where the batch, the instructions and the rankings live."""
    batch_size: int = Field(32, gt=0)
    """Prompts per generation batch."""
    seed: int | None = None
    """Seed of the prompt draw and of sampling; ``null``: the run's ``seed``."""

    @field_validator("generation")
    @classmethod
    def _samples(cls, v: GenerationSettings | None) -> GenerationSettings | None:
        if v is not None and not v.do_sample:
            raise ValueError("do_sample must be true: distinct candidates need sampling")
        return v
