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


PAGE_SPECIAL_LABELS = ("all_unusable", "prompt_unsafe", "skip")
"""The special labels the labelling page offers (``detoxrl.data.rankings.SPECIAL_LABELS``, which a test
keeps equal to this tuple; the config cannot import the data layer)."""


class SimulatedLabellerSettings(_Strict):
    """The testbed's simulated labeller (``detoxrl.testbed.labeller``, where each step is defined): it
    ranks each batch item by the truth the testbed knows, then errs as configured."""

    noise: float = Field(0.1, ge=0, le=1)
    """Probability that the labeller puts an item's candidates in a random order instead of the true one
    (a careless answer): it reverses a share ``noise/2`` of the pairs on average (5% at 0.1)."""
    tie_rate: float = Field(0.05, ge=0, le=1)
    """After the noise: each adjacent pair in the labeller's order is declared a tie with this probability."""
    special_rate: float = Field(0.05, ge=0, le=1)
    """Probability that an item gets a special label (uniform among ``specials``) instead of ranks."""
    specials: list[str] = Field(default_factory=lambda: list(PAGE_SPECIAL_LABELS))
    """The special labels it gives; each one of the page's."""
    faithfulness_margin: float = Field(0.0, ge=0, le=1)
    """Candidates with the same number of offensive words whose ROUGE-L differ by at most this much (from
    the next better one) are tied in the truth: a labeller cannot tell them apart. 0: only equal ones."""
    labeller: str = "simulated"
    """The ``labeller`` of its rows."""
    seed: int | None = None
    """``null``: ``labels.seed``, else the run's ``seed``."""

    @field_validator("specials")
    @classmethod
    def _page_labels(cls, v: list[str]) -> list[str]:
        bad = [s for s in v if s not in PAGE_SPECIAL_LABELS]
        if bad:
            raise ValueError(f"{bad} are not special labels of the labelling page; use {list(PAGE_SPECIAL_LABELS)}")
        return v

    @field_validator("labeller")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("the labeller's name must not be empty")
        return v


class LabelSettings(_Strict):
    """Responses for people to rank: ``detoxrl candidates`` writes ``output_dir/batch.jsonl`` and
    ``instructions.md``; ``detoxrl label`` serves the page that writes ``output_dir/rankings.jsonl``
    (docs/labelling.md)."""

    enabled: bool = False
    """Whether ``detoxrl run`` runs the ``candidates`` and ``labels`` stages (the commands run either way)."""
    simulated: SimulatedLabellerSettings | None = None
    """The ``labels`` stage: ``null`` checks the rankings people made (``detoxrl label``, or
    ``import-labels`` into ``rankings.jsonl``) and stops the run until there are some; set, the testbed's
    simulated labeller writes them."""
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
