"""One run per folder, whatever happens: the folder lock (released when its holder is killed), atomic
rewrites, each metric record once across resumes, and resuming a finished run."""

import errno
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from corewarding.cli import app
from corewarding.core.atomic_files import write_atomically
from corewarding.core.folder_lock import LOCK_FILE, FolderInUseError, locked_folder
from corewarding.demo import run_demo
from corewarding.training.callbacks import MetricsFileCallback
from corewarding.training.run import finished_run
from corewarding.training.settings import load_recipe

REPO_ROOT = Path(__file__).resolve().parents[1]
HOLD_THE_LOCK = """
import sys, time
from corewarding.core.folder_lock import locked_folder
with locked_folder(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def held_folder(tmp_path):
    """A folder whose lock another process holds: (folder, that process)."""
    folder = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_LOCK, str(folder)], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert holder.stdout.readline().strip() == "held"
    yield folder, holder
    holder.kill()
    holder.wait()


def test_a_second_run_into_a_locked_folder_is_refused_naming_the_holder(held_folder):
    folder, holder = held_folder
    in_use = f"{folder} is in use by another run (PID {holder.pid}): wait for it to end, or "
    with pytest.raises(FolderInUseError) as refused:
        with locked_folder(folder, "choose another folder"):
            pass
    assert str(refused.value) == f"{in_use}choose another folder"
    result = CliRunner().invoke(
        app, ["train", "--config", "tiny/majority_vote", "--output_dir", str(folder), "--max_steps", "2"]
    )
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == f"error: {in_use}choose another --output_dir"
    with pytest.raises(FolderInUseError, match=f"PID {holder.pid}"):
        run_demo(["majority_vote"], output_dir=folder)
    labelled = folder.parent / "labelled.jsonl"
    row = {
        "question_id": "0", "question": "1+1?", "reference": "2", "completion": "\\boxed{2}", "answer": "2",
        "label": True, "labeler": "verifier", "split": "train",
    }
    labelled.write_text(json.dumps(row) + "\n")
    result = CliRunner().invoke(app, ["rm", "train", str(labelled), "-o", str(folder)])
    assert result.exit_code == 2 and f"(PID {holder.pid})" in result.output
    assert sorted(p.name for p in folder.iterdir()) == [LOCK_FILE]  # nothing written by the refused runs


def test_a_process_alone_in_its_world_asks_for_the_lock_whatever_its_rank_says(held_folder, monkeypatch):
    # A launcher that starts processes without joining them (torchrun on a CPU, before use_cpu was set for
    # it) gave rank 1 to a process that then trained alone: it took no lock and wrote into the folder.
    folder, holder = held_folder
    monkeypatch.setenv("RANK", "1")
    result = CliRunner().invoke(
        app, ["train", "--config", "tiny/majority_vote", "--output_dir", str(folder), "--max_steps", "2"]
    )
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1].startswith(f"error: {folder} is in use by another run (PID")
    assert sorted(p.name for p in folder.iterdir()) == [LOCK_FILE]


def test_the_lock_of_a_killed_run_is_free_at_once(held_folder):
    folder, holder = held_folder
    holder.kill()  # SIGKILL: no clean-up ran; the OS released the lock
    holder.wait()
    with locked_folder(folder) as locked:
        assert (locked / LOCK_FILE).read_text() == f"{os.getpid()}\n"
    assert not (folder / LOCK_FILE).exists()


def test_a_lock_leaves_no_trace_in_a_folder_it_created_and_nothing_else_wrote(tmp_path):
    with locked_folder(tmp_path / "new"):
        pass
    assert not (tmp_path / "new").exists()
    with locked_folder(tmp_path / "kept"):
        (tmp_path / "kept" / "metrics.jsonl").write_text("")
    assert [p.name for p in (tmp_path / "kept").iterdir()] == ["metrics.jsonl"]


def test_an_atomic_rewrite_that_fails_leaves_the_old_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n')

    def disk_full(descriptor):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_atomically(path, '{"step": 1}\n')
    assert path.read_text() == '{"step": 1}\n{"step": 2}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]


WRITE_ATOMICALLY = """
import sys
from corewarding.core.atomic_files import write_atomically
write_atomically(sys.argv[1], sys.argv[2])
"""


def test_two_processes_rewriting_one_file_never_take_each_others_temporary_file(tmp_path, monkeypatch):
    # The ranks of one run once wrote config.yaml through one fixed temporary name: a process that wrote
    # and renamed it while another was between its write and its rename left that one nothing to rename.
    path = tmp_path / "config.yaml"
    flush = os.fsync

    def another_process_writes_meanwhile(descriptor):
        flush(descriptor)
        other = subprocess.run(
            [sys.executable, "-c", WRITE_ATOMICALLY, str(path), "other: 1\n"], capture_output=True, text=True,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )
        assert other.returncode == 0, other.stderr

    monkeypatch.setattr(os, "fsync", another_process_writes_meanwhile)
    write_atomically(path, "this: 1\n")
    assert path.read_text() == "this: 1\n"  # both renames whole, the last one wins
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]


def test_the_metrics_cut_back_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    before = "".join(json.dumps({"step": step, "loss": 0.5}) + "\n" for step in (1, 2, 3))
    path.write_text(before)

    def killed(*args):
        raise KeyboardInterrupt  # the moment before the rename: the worst one to die at

    monkeypatch.setattr(os, "replace", killed)
    resumed_at_2 = SimpleNamespace(is_world_process_zero=True, global_step=2)
    with pytest.raises(KeyboardInterrupt):
        MetricsFileCallback().on_train_begin(SimpleNamespace(output_dir=str(tmp_path)), resumed_at_2, None)
    assert path.read_text() == before


def test_each_metric_record_is_written_once_across_a_resume(tmp_path):
    path = tmp_path / "metrics.jsonl"
    records = [
        {"step": 0, "eval_greedy_accuracy": 0.25}, {"step": 1, "loss": 0.1}, {"step": 2, "loss": 0.2},
        {"step": 2, "eval_greedy_accuracy": 0.5}, {"step": 3, "loss": 0.3},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    args, state = SimpleNamespace(output_dir=str(tmp_path)), SimpleNamespace(is_world_process_zero=True)
    callback = MetricsFileCallback()
    state.global_step = 2  # resumed from checkpoint-2: step 3 was not saved
    callback.on_train_begin(args, state, None)
    callback.on_log(args, state, None, logs={"eval_greedy_accuracy": 0.5})  # eval_on_start again
    callback.on_log(args, state, None, logs={"eval_greedy_accuracy": 0.5, "eval_pass_at_4": 0.75})
    state.global_step = 3
    callback.on_log(args, state, None, logs={"loss": 0.35})
    written = [json.loads(line) for line in path.read_text().splitlines()]
    new_eval = {"step": 2, "eval_greedy_accuracy": 0.5, "eval_pass_at_4": 0.75}
    assert written == [*records[:4], new_eval, {"step": 3, "loss": 0.35}]


@pytest.mark.parametrize(
    "step, settings, finished",
    [
        (12, {"max_steps": 12}, "(max_steps 12)"),
        (12, {"max_steps": 10}, "(max_steps 10)"),
        (12, {"max_steps": 20}, None),
        (12, {"max_steps": -1, "num_train_epochs": 1}, "(num_train_epochs 1)"),
        (12, {"max_steps": -1, "num_train_epochs": 2}, None),
        (6, {"max_steps": 12}, None),
    ],
)
def test_resuming_a_finished_run_trains_nothing_unless_it_is_extended(tmp_path, step, settings, finished):
    """The checkpoint is of a run of 12 steps, one epoch."""
    checkpoint = tmp_path / f"checkpoint-{step}"
    checkpoint.mkdir()
    saved = {"global_step": step, "max_steps": 12, "num_train_epochs": 1}
    (checkpoint / "trainer_state.json").write_text(json.dumps(saved))
    config = load_recipe("tiny/majority_vote", output_dir=str(tmp_path), **settings)
    why = finished_run(config, str(checkpoint))
    if finished is None:
        assert why is None
    else:
        assert why == (
            f"nothing to train: {checkpoint} is at step 12, the end of its run {finished}; a larger "
            "--max_steps extends it"
        )


def test_a_write_removes_the_temporary_files_of_killed_writers_and_keeps_those_of_live_ones(tmp_path):
    # Temporary names carry the writer's PID: a rerun after a kill never writes through the killed
    # process's file, so the next write of the same name removes it (a run folder keeps no stray file).
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone, alive = int(ended.stdout), os.getppid()
    path = tmp_path / "rm_train.json"
    (tmp_path / f".rm_train.json.{gone}.tmp").write_text("half")
    (tmp_path / f".rm_train.json.{alive}.tmp").write_text("being written")
    write_atomically(path, "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".rm_train.json.{alive}.tmp", "rm_train.json"]
