"""Can the model do the task at all: the one warning line of a run's first measurements."""

import pytest

from corewarding.core import metric_names
from corewarding.core.task_fit import FORMAT_REWARD, task_fit_warning

HELDOUT_ZERO = {metric_names.HELDOUT_GREEDY: 0.0, metric_names.HELDOUT_SAMPLED: 0.0}


@pytest.mark.parametrize(
    "logs, step, first, says",
    [
        (HELDOUT_ZERO, 0, False, "at step 0 the model solves none of the held-out questions (0%)"),
        (
            {**HELDOUT_ZERO, metric_names.HELDOUT_NO_ANSWER: 0.97}, 0, False,
            "97% of the model's held-out samples",
        ),
        ({FORMAT_REWARD: 0.02, "loss": 0.1}, 1, True, "only 2% of the rollouts give an answer"),
        # what the model can do, or measurements past the first ones: no warning
        ({metric_names.HELDOUT_GREEDY: 0.0, metric_names.HELDOUT_SAMPLED: 0.03}, 0, False, None),
        (HELDOUT_ZERO, 4, False, None),
        ({FORMAT_REWARD: 0.02}, 2, False, None),
        ({FORMAT_REWARD: 0.5}, 1, True, None),
    ],
)
def test_a_model_that_cannot_do_the_task_is_one_warning_at_its_first_measurements(logs, step, first, says):
    warning = task_fit_warning(logs, step, first)
    if says is None:
        assert warning is None
    else:
        assert warning.startswith("warning: ") and says in warning and "\n" not in warning
        assert "corewarding diagnose" in warning and "--model_name_or_path" in warning
