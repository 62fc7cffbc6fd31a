"""The command line's one place for errors: a user's mistake is one line (exit 2), a bug says it is one
(exit 70) and shows its traceback under --debug or COREWARDING_DEBUG=1."""

import pytest
import typer
from typer.testing import CliRunner

from corewarding.cli import app
from corewarding.cli.app import BUG_EXIT_CODE, handles_errors
from corewarding.core.errors import UserError
from corewarding.training import settings


def failing_app(error: Exception) -> typer.Typer:
    probe = typer.Typer()

    @probe.command()
    @handles_errors()
    def fail() -> None:
        raise error

    @probe.command()
    def other() -> None:  # two commands: `fail` is then a subcommand, as in the real app
        pass

    return probe


@pytest.mark.parametrize(
    "error, line",
    [
        (UserError("q.jsonl has no column 'question'"), "error: q.jsonl has no column 'question'"),
        (FileNotFoundError(2, "No such file or directory", "q.jsonl"),
         "error: q.jsonl: No such file or directory"),
    ],
)
def test_a_users_mistake_is_one_line_with_exit_code_2(error, line):
    result = CliRunner().invoke(failing_app(error), ["fail"])
    assert (result.exit_code, result.output.strip()) == (2, line)


def test_a_bug_is_not_dressed_as_a_users_mistake(monkeypatch):
    monkeypatch.delenv("COREWARDING_DEBUG", raising=False)
    result = CliRunner().invoke(failing_app(ValueError("shapes (3,) and (4,) differ")), ["fail"])
    assert result.exit_code == BUG_EXIT_CODE and "Traceback" not in result.output
    assert result.output.startswith("internal error: ValueError: shapes (3,) and (4,) differ (a bug")
    assert "--debug" in result.output and "COREWARDING_DEBUG=1" in result.output


def test_the_environment_variable_shows_the_traceback(monkeypatch):
    monkeypatch.setenv("COREWARDING_DEBUG", "1")
    result = CliRunner().invoke(failing_app(KeyError("views")), ["fail"])
    assert isinstance(result.exception, KeyError) and result.exit_code == 1  # raised, not a line
    monkeypatch.setenv("COREWARDING_DEBUG", "0")
    assert CliRunner().invoke(failing_app(KeyError("views")), ["fail"]).exit_code == BUG_EXIT_CODE


def test_the_debug_option_shows_the_traceback_of_a_real_command(monkeypatch):
    monkeypatch.delenv("COREWARDING_DEBUG", raising=False)

    def broken(recipe, args):
        raise KeyError("a bug in the settings")

    monkeypatch.setattr(settings, "config_from_args", broken)
    plain = CliRunner().invoke(app, ["train", "--config", "tiny/majority_vote"])
    assert plain.exit_code == BUG_EXIT_CODE and "internal error: KeyError" in plain.output
    debugged = CliRunner().invoke(app, ["--debug", "train", "--config", "tiny/majority_vote"])
    assert isinstance(debugged.exception, KeyError)
    # A user's mistake stays one line under --debug too.
    monkeypatch.undo()
    mistake = CliRunner().invoke(
        app, ["--debug", "train", "--config", "tiny/majority_vote", "--max_steps", "0"]
    )
    assert mistake.exit_code == 2 and mistake.output.strip().splitlines()[-1].startswith("error: max_steps")
