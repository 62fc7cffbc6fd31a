"""The ``corewarding`` command line: thin commands over the library (parse → call → print).

``app`` (:mod:`corewarding.cli.app`) holds the commands and turns errors into one-line messages; the
commands live by subject: :mod:`~corewarding.cli.diagnosis` (diagnose),
:mod:`~corewarding.cli.training` (demo, train, pretrain, report), :mod:`~corewarding.cli.evaluation`
(eval), :mod:`~corewarding.cli.rephrasing` (rephrase, validate-pairs), :mod:`~corewarding.cli.reward_model`
(rm annotate, rm train).
"""

# --help lists the commands in the order of a user's work (app.WORKFLOW), whatever the imports' order.
from corewarding.cli import (  # noqa: F401  (they register commands)
    diagnosis,
    evaluation,
    rephrasing,
    reward_model,
    training,
)
from corewarding.cli.app import app

__all__ = ["app"]

if __name__ == "__main__":
    app()
