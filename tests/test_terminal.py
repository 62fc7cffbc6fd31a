"""Output whose reader goes away (`corewarding train … | head -2`) goes quiet; the run goes on (the real
run: tests/test_train_runs.py)."""

import os

from corewarding.core.terminal import QuietWhenClosed


def test_output_whose_reader_went_away_goes_quiet():
    """A write or flush to a pipe nobody reads any more prints nothing and raises nothing."""
    read, write = os.pipe()
    os.close(read)
    stream = QuietWhenClosed(os.fdopen(write, "w", buffering=1))
    for _ in range(3):
        assert stream.write("step 1/6: reward 0.5\n") == 21
        stream.flush()
    assert os.readlink(f"/proc/self/fd/{stream.fileno()}") == os.devnull
    stream.close()
