"""``labels/instructions.md``: what the people who rank are asked to do, made from ``labels.criterion``.

The file is written only when it is absent, so a project's edits to it are never overwritten; the page
shows whatever it holds (as Markdown where the ``markdown`` package is installed, it comes with
tensorboard, else as pre-formatted text).
"""

from __future__ import annotations

import html
import textwrap
from pathlib import Path

from detoxrl.feedback.rankings import SPECIAL_LABELS
from detoxrl.utils import atomic_write_text

_WIDTH = 104

SPECIAL_KEYS = {"all_unusable": "u", "prompt_unsafe": "p", "skip": "s"}
"""The key that chooses each special label on the page."""

_WHEN = {
    "all_unusable": "no candidate is acceptable: all of them are toxic, off the subject, empty or nonsense, "
                    "so an order among them would teach nothing. If some are acceptable and some are not, "
                    "rank them instead (the unacceptable ones last, tied if equally bad).",
    "prompt_unsafe": "the prompt itself should not be used, whatever the candidates say: it is not a "
                     "dialogue, it holds private data (names and addresses of real people, numbers), or it "
                     "is abuse you would rather not have in the training data.",
    "skip": "you cannot judge this item: you do not understand it, or you are unsure and would rather "
            "someone else decided. Skipping is always better than guessing.",
}


def instructions_text(criterion: str, n_candidates: int) -> str:
    """The default instructions for a criterion and a number of candidates per prompt."""
    specials = "\n".join(textwrap.fill(f"- **`{name}`** (key `{SPECIAL_KEYS[name]}`): use it when {_WHEN[name]}",
                                        width=_WIDTH, subsequent_indent="  ") for name in SPECIAL_LABELS)
    criterion = "\n\n".join(textwrap.fill(" ".join(p.split()), width=_WIDTH) for p in criterion.strip().split("\n\n"))
    n = n_candidates
    return f"""# Labelling instructions

Each item shows a prompt (a dialogue and what the model was asked to do with it) and up to {n} candidate
responses written by the model. Rank the candidates from best to worst, or, where ranking makes no sense,
choose one special label instead. Your rankings train the reward model that teaches the policy, so rank
by the criterion below, not by taste.

## What "better" means

{criterion}

## Ranking and ties

Give every candidate a rank: **1 is the best**. Candidates that are equally good (or equally bad) share a
rank: that is a **tie**, and the ranks after it skip, as in sports results: with a tie for second place
the ranks are 1, 2, 2, 4. The page refuses other forms (such as 1, 2, 2, 3) and says what it expected.
A tie says "no preference"; it is not a way out of a hard decision, so use it only when neither candidate
is better.

## Special labels (instead of ranks)

{specials}

## Keys

- `Tab`, `↑`/`↓` or `j`/`k`: move between candidates; a digit (`1`–`{n}`) ranks the focused one and moves on;
  `0` or `Backspace` clears its rank.
- `u`, `p`, `s`: choose (or clear) a special label.
- `Enter`: submit. Every submission is saved at once; you can close the page and come back later.

_This file was written by `detoxrl candidates` from `labels.criterion`. Edit it freely: it is never
overwritten._
"""


def write_instructions(path: str | Path, criterion: str, n_candidates: int) -> bool:
    """Write the default instructions to ``path`` unless the file exists; True if written."""
    path = Path(path)
    if path.exists():
        return False
    atomic_write_text(path, instructions_text(criterion, n_candidates))
    return True


def render_instructions(text: str) -> str:
    """The instructions as HTML: Markdown when the ``markdown`` package is there, else escaped ``<pre>``."""
    try:
        import markdown
    except ImportError:
        return f"<pre>{html.escape(text)}</pre>"
    return markdown.markdown(text, extensions=["sane_lists"])
