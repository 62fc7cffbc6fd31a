"""A reward model made when a run needs one and none is there yet: ``rm annotate`` then ``rm train``.

What ``corewarding rm annotate DATA`` and ``corewarding rm train DATA -o FOLDER`` do with their defaults,
as one call: :data:`QUESTIONS` synthetic training questions of the policy's task, each answered
``AnnotationSettings.samples`` times by the policy and labelled by the rule-based verifier
(:func:`~corewarding.cooper.annotate.annotate`), then a reward model trained on them by binary
cross-entropy from the policy's backbone with a fresh head
(:func:`~corewarding.cooper.supervised.train_reward_model`). Both steps show their progress bars and
resume where an interrupted call stopped; a folder that already holds a finished reward model
(``rm_train.json``) is used as it is. The demo makes Cooper's reward model this way, and so do the tiny
Cooper recipes (``make_reward_model: true``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from corewarding.cooper.annotate import AnnotationSettings, annotate, read_labelled
from corewarding.cooper.reward_model import RewardModel
from corewarding.cooper.supervised import RESULT_FILE, train_reward_model

__all__ = ["QUESTIONS", "make_reward_model", "needs_making"]

#: Synthetic questions annotated (``rm annotate``'s default ``--problems``).
QUESTIONS = 500


def needs_making(folder: str | Path) -> bool:
    """Whether ``folder`` lacks a finished reward model and may be made into one: it does not exist, or
    holds what an interrupted :func:`make_reward_model` left (no ``config.json``, or ``checkpoint-*``
    folders). A model folder of one's own (``config.json``, no checkpoints) is never overwritten."""
    folder = Path(folder)
    if (folder / RESULT_FILE).is_file():
        return False
    return not (folder / "config.json").is_file() or any(folder.glob("checkpoint-*"))


def make_reward_model(
    folder: str | Path,
    data: str | Path,
    policy: str = "tiny",
    seed: int = 0,
    say: Callable[[str], None] = print,
) -> tuple[Path, Path]:
    """Label completions of ``policy`` into ``data`` and train a reward model into ``folder`` (both
    resumed when an earlier call was cut short); returns ``(folder, data)``. Does nothing when
    :func:`needs_making` says the folder holds a reward model already. ``say`` prints the progress
    lines."""
    from corewarding.inference.generation import TransformersBackend
    from corewarding.inference.models import load_model
    from corewarding.tiny.regimes import synthetic_problems

    folder, data = Path(folder), Path(data)
    if not needs_making(folder):
        return folder, data
    say(f"making the reward model (once; 5 to 10 minutes on 2 CPU cores): labelling {QUESTIONS} questions x "
        f"{AnnotationSettings().samples} completions of {policy} into {data}")
    data.parent.mkdir(parents=True, exist_ok=True)
    model, tokenizer = load_model(policy)
    annotate(synthetic_problems(policy, QUESTIONS, "train", seed=seed),
             TransformersBackend(model, tokenizer, seed=seed), data, AnnotationSettings(), policy=policy)
    say(f"training the reward model on them into {folder}")
    result = train_reward_model(RewardModel.load(policy, seed=seed), read_labelled(data, "train"),
                                read_labelled(data, "heldout"), folder)
    final = result.epochs[-1] if result.epochs else {}
    if final.get("accuracy") is not None:
        say(f"reward model ready: {100 * final['accuracy']:.1f}% accurate on {result.heldout_examples} "
            "held-out completions")
    return folder, data
