"""The sandbox of the code benchmark: a correct program passes; hostile programs (a fork bomb, an infinite
loop, a 10 GB allocation, writing outside its directory, opening a socket, endless output) each end as
"failed" without harming the evaluator; the network namespace and the resource limits hold on their own."""

import socket
import subprocess
import sys
import time

import pytest

from corewarding.core.sandbox import SandboxLimits, network_isolation, run_program

LIMITS = SandboxLimits(timeout_s=3.0)


def test_a_correct_program_passes_and_a_wrong_one_fails():
    assert run_program("def add(a, b):\n    return a + b\nassert add(2, 3) == 5\n", LIMITS).passed
    wrong = run_program("def add(a, b):\n    return a - b\nassert add(2, 3) == 5\n", LIMITS)
    assert (wrong.passed, wrong.status, wrong.exit_code) == (False, "failed", 1)
    assert "AssertionError" in wrong.stderr


def test_stdin_and_expected_output():
    program = "a, b = map(int, input().split())\nprint(a * b)\n"
    assert run_program(program, LIMITS, stdin="6 7\n", expected_output="42\n").passed
    wrong = run_program(program, LIMITS, stdin="6 7\n", expected_output="41")
    assert (wrong.passed, wrong.status, wrong.stdout.strip()) == (False, "wrong_output", "42")


def test_an_infinite_loop_is_killed_at_the_timeout():
    started = time.monotonic()
    result = run_program("while True:\n    pass\n", SandboxLimits(timeout_s=1.0))
    assert (result.passed, result.status) == (False, "timeout")
    assert time.monotonic() - started < 20  # bounded by the timeout, with room for a loaded machine


def test_a_fork_bomb_fails_and_leaves_no_process(tmp_path):
    marker = tmp_path / "forked"
    bomb = f"import os\nwhile True:\n    if os.fork() == 0:\n        open({str(marker)!r}, 'a').write('x')\n"
    result = run_program(bomb, LIMITS)
    assert (result.passed, result.status) == (False, "failed")
    assert "os.fork is not allowed" in result.stderr
    assert not marker.exists()
    # The evaluator can still start processes.
    assert subprocess.run([sys.executable, "-c", "pass"], check=False).returncode == 0


def test_a_10_gb_allocation_fails():
    result = run_program("block = bytearray(10 * 1024**3)\nprint(len(block))\n", LIMITS)
    assert (result.passed, result.status) == (False, "failed")
    assert "MemoryError" in result.stderr


@pytest.mark.parametrize(
    "write",
    [
        "open({target!r}, 'w').write('escaped')",
        "import os\nos.symlink({folder!r}, 'link')\nopen('link/escaped.txt', 'w').write('escaped')",
        "import os\nfd = os.open({target!r}, os.O_WRONLY | os.O_CREAT)\nos.write(fd, b'escaped')",
        "import shutil\nopen('mine.txt', 'w').write('x')\nshutil.copyfile('mine.txt', {target!r})",
    ],
    ids=["open", "through-a-symlink", "os.open", "copy"],
)
def test_writing_outside_its_directory_fails(tmp_path, write):
    target = tmp_path / "escaped.txt"
    result = run_program(write.format(target=str(target), folder=str(tmp_path)), LIMITS)
    assert (result.passed, result.status) == (False, "failed")
    assert not target.exists()


def test_writing_inside_its_directory_is_allowed():
    program = "open('scratch.txt', 'w').write('ok')\nassert open('scratch.txt').read() == 'ok'\n"
    assert run_program(program, LIMITS).passed


def test_opening_a_socket_fails_and_reaches_nothing():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(0.5)
        port = server.getsockname()[1]
        program = (
            f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1).sendall(b'hi')\n"
        )
        result = run_program(program, LIMITS)
        assert (result.passed, result.status) == (False, "failed")
        with pytest.raises(TimeoutError):
            server.accept()


def test_the_network_namespace_alone_stops_a_connection():
    """Without the audit hook: the namespace the sandbox runs programs in has no route to the host."""
    prefix = network_isolation()
    if prefix is None:
        pytest.skip("unshare cannot make a network namespace here (the audit hook alone refuses sockets)")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(0.5)
        port = server.getsockname()[1]
        connect = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)"
        done = subprocess.run(
            [*prefix, sys.executable, "-I", "-c", connect], capture_output=True, check=False
        )
        assert done.returncode != 0 and b"OSError" in done.stderr, done.stderr
        with pytest.raises(TimeoutError):
            server.accept()


def test_endless_output_is_cut_and_the_run_fails():
    limits = SandboxLimits(timeout_s=5.0, file_bytes=1024**2, output_bytes=1000)
    result = run_program("while True:\n    print('x' * 1000)\n", limits)
    assert not result.passed and result.status in {"failed", "killed"}
    assert len(result.stdout) <= 1000


def test_the_environment_holds_no_secret(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "secret")
    program = "import os\nassert 'HF_TOKEN' not in os.environ, os.environ\n"
    assert run_program(program, LIMITS).passed
