"""A stop signal asks a run to stop at a step's end; a second one, or the grace period's end, abandons the
step; the command line prints either in one line with its exit code. Real signals to this process; the
real runs they stop are in tests/test_checkpoints.py."""

import os
import signal
import time

import pytest
from typer.testing import CliRunner

from corewarding.core import stop_signals
from corewarding.core.errors import SettingError
from corewarding.core.stop_signals import StopAbandoned, StoppedBySignal, requested, stopping_on
from test_cli_app import failing_app


def wait_for(condition, seconds: float = 10.0) -> None:
    """Run Python bytecode (where signal handlers run) until ``condition()`` holds."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_names_parse_and_an_unknown_one_is_a_setting_error():
    assert stop_signals.parse_signals("SIGTERM, usr1") == (signal.SIGTERM, signal.SIGUSR1)
    assert stop_signals.parse_signals("none") == () == stop_signals.parse_signals("")
    with pytest.raises(SettingError, match="'SIGKILL' is not a signal a run can stop on"):
        stop_signals.parse_signals("SIGTERM,SIGKILL")


def test_a_signal_asks_to_stop_a_repeat_is_the_same_request_and_the_handlers_come_back(capsys):
    before = signal.getsignal(signal.SIGTERM)
    with stopping_on("SIGTERM,SIGUSR1"):
        assert requested() is None
        os.kill(os.getpid(), signal.SIGUSR1)
        wait_for(lambda: requested() == "SIGUSR1")
        os.kill(os.getpid(), signal.SIGTERM)  # a launcher passing the same request on: no abandon
        time.sleep(0.2)
        assert requested() == "SIGUSR1"
    assert requested() is None and signal.getsignal(signal.SIGTERM) is before
    assert capsys.readouterr().err == (
        "SIGUSR1: stopping at the end of this step (a second signal stops at once)\n"
    )


def test_a_second_signal_abandons_the_step(monkeypatch):
    monkeypatch.setattr(stop_signals, "REPEAT_WINDOW_S", 0.0)
    with pytest.raises(StopAbandoned, match=r"^a second signal \(SIGTERM\) after SIGINT$"):
        with stopping_on("SIGINT,SIGTERM"):
            os.kill(os.getpid(), signal.SIGINT)
            wait_for(lambda: requested() == "SIGINT")
            os.kill(os.getpid(), signal.SIGTERM)
            wait_for(lambda: False)


def test_the_grace_period_running_out_abandons_the_step():
    started = time.monotonic()
    with pytest.raises(StopAbandoned, match=r"^the grace period of 0.3 s after SIGTERM ran out$"):
        with stopping_on("SIGTERM", grace_s=0.3):
            os.kill(os.getpid(), signal.SIGTERM)
            wait_for(lambda: False)
    assert time.monotonic() - started >= 0.3


def test_a_stopped_run_exits_75_and_an_abandoned_step_130_each_in_one_line():
    line = "stopped by SIGTERM at step 3 of 6: checkpoint runs/x/checkpoint-3 written; go on with …"
    result = CliRunner().invoke(failing_app(StoppedBySignal(line)), ["fail"])
    assert (result.exit_code, result.output) == (75, line + "\n")
    abandoned = StopAbandoned("a second signal (SIGINT) after SIGTERM")
    result = CliRunner().invoke(failing_app(abandoned), ["fail"])
    assert (result.exit_code, result.output) == (130, "a second signal (SIGINT) after SIGTERM; interrupted\n")

