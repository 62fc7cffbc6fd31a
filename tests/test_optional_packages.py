"""An optional integration whose package is missing is the user's to install: one line with the install
command, exit code 2, before any model is loaded (it was TRL's "internal error" after loading, exit 70)."""

import sys

import pytest
from typer.testing import CliRunner

from corewarding.cli import app
from corewarding.core.optional_packages import MissingPackageError, require_reporting


@pytest.fixture
def not_installed(monkeypatch):
    """Make the named modules look absent (``find_spec`` and ``import`` both), installed or not."""

    def hide(*modules: str) -> None:
        for module in modules:
            monkeypatch.setitem(sys.modules, module, None)

    return hide


@pytest.fixture
def no_model_loaded(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr("corewarding.training.run.load_model", refuse)


@pytest.mark.parametrize(
    "settings, hidden, line",
    [
        (["--report_to", "tensorboard"], ("tensorboard", "tensorboardX"),
         "error: --report_to tensorboard needs the tensorboard package, which is not installed: pip install "
         "tensorboard"),
        (["--report_to", "trackio"], ("trackio",),
         "error: --report_to trackio needs the trackio package, which is not installed: pip install trackio"),
        (["--use_vllm", "true"], ("vllm",),
         "error: use_vllm needs the vllm package, which is not installed: pip install 'corewarding[vllm]'"),
    ],
)
def test_train_with_a_missing_integration_is_one_line_before_any_model(
    tmp_path, not_installed, no_model_loaded, settings, hidden, line
):
    not_installed(*hidden)
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["train", "--config", "tiny/majority_vote", "--output_dir", str(out), *settings]
    )
    assert (result.exit_code, result.output.strip().splitlines()[-1]) == (2, line), result.output
    assert not out.exists()


def test_every_reporting_integration_of_a_setting_is_checked(not_installed):
    not_installed("mlflow", "wandb")
    for report_to in ("mlflow", "codecarbon, mlflow", ["wandb"]):
        with pytest.raises(MissingPackageError, match=r"needs the (mlflow|wandb) package"):
            require_reporting(report_to)
    for report_to in ("none", "all", [], None, "codecarbon"):  # nothing to check, or transformers' to check
        require_reporting(report_to)
