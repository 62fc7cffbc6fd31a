"""The conventions every command shares, through the real entry point: help without heavy imports, in
workflow order and never cut when piped; both option spellings; one column-mapping option; usage
mistakes in one line; values checked with "did you mean" before torch is imported; one sampling
temperature for evaluation; one threads rule; quiet logs that are not cut at 80 columns."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from corewarding.cli import app
from corewarding.cli.app import WORKFLOW
from corewarding.cli import options
from corewarding.cli.options import default_threads
from corewarding.core.errors import SettingError
from corewarding.inference.evaluate import SAMPLING_TEMPERATURE

ROOT = Path(__file__).parents[1]
HEAVY = ("torch", "transformers", "trl", "datasets", "accelerate")
#: Imports of these fail in the subprocess: what runs there must not need them.
BLOCKER = f"""
import importlib.abc, sys
class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {set(HEAVY)!r}:
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Blocked())
"""


def torch_runs_bf16() -> bool:
    from transformers.utils import is_torch_bf16_gpu_available

    return is_torch_bf16_gpu_available()


def corewarding(*args: str, blocked: bool = False, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m corewarding ARGS`` as a user runs it, its output piped (not a terminal); with
    ``blocked``, torch, transformers, TRL, datasets and accelerate cannot be imported."""
    code = (BLOCKER if blocked else "") + "import runpy\nrunpy.run_module('corewarding', run_name='__main__')"
    environment = {k: v for k, v in os.environ.items() if k != "COLUMNS"} | (env or {})
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT, env=environment,
        check=False,
    )


def commands(group=None, prefix=()):
    """Every command's words (``["rm", "train"]``), from the real application."""
    group = group or typer.main.get_command(app)
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from commands(command, (*prefix, name))
        else:
            yield [*prefix, name]


# --- help -------------------------------------------------------------------------------------------


def test_every_help_screen_shows_without_importing_torch_or_trl():
    for words in [[], ["rm"], *commands()]:
        done = corewarding(*words, "--help", blocked=True)
        assert done.returncode == 0 and "Usage" in done.stdout, (words, done.stderr[-2000:])
        assert "…" not in done.stdout, words  # piped, no option name and no value is cut


def test_h_is_help_for_every_command_and_version_is_one_line():
    for words in (["eval"], ["rm", "train"], ["demo"]):
        done = corewarding(*words, "-h", blocked=True)
        assert done.returncode == 0 and done.stdout.startswith("Usage:"), (words, done.stderr)
    from corewarding import __version__

    done = corewarding("--version", blocked=True)
    assert (done.returncode, done.stdout) == (0, f"corewarding {__version__}\n")


def test_train_takes_the_output_option_of_every_other_command(tmp_path):
    from corewarding.training.settings import config_from_args

    for option in ("-o", "--output", "--output-dir", "--output_dir"):
        assert config_from_args("tiny/majority_vote", [option, str(tmp_path)]).output_dir == str(tmp_path)


def test_a_misspelled_recipe_name_gets_a_did_you_mean():
    done = corewarding("train", "--config", "tiny/majority_vot", blocked=True)
    assert done.returncode == 2
    assert done.stderr.startswith("error: no recipe at tiny/majority_vot (did you mean tiny/majority_vote?): ")


def test_commands_are_listed_in_workflow_order():
    shown = typer.main.get_command(app).list_commands(None)
    assert shown == [name for name in WORKFLOW if name in shown] and set(shown) <= set(WORKFLOW)
    assert shown[0] == "demo" and shown.index("train") < shown.index("eval") < shown.index("report")


def test_train_help_piped_to_a_file_cuts_no_setting():
    done = corewarding("train", "--help", blocked=True)
    method = next(line for line in done.stdout.splitlines() if line.startswith("  --method "))
    assert method.rstrip().endswith("cooper, cooper_static"), method
    # A terminal's width wraps the same text instead.
    from corewarding.training.settings import settings_help

    wrapped = settings_help(width=100).splitlines()
    assert all(len(line) <= 100 for line in wrapped if line.startswith("  "))
    assert any("cooper_static" in line for line in wrapped)


# --- one convention ------------------------------------------------------------------------------------


def test_every_option_of_every_command_takes_both_spellings():
    for words in commands():
        command = typer.main.get_command(app)
        for word in words:
            command = command.commands[word]
        for param in command.params:
            for opt in param.opts:
                if not opt.startswith("--") or "-" not in opt[2:] or opt == "--help":
                    continue
                underscored = opt.replace("-", "_")
                given = [underscored] if param.is_flag else [f"{underscored}=1"]
                result = CliRunner().invoke(app, [*words, *given, "--help"])
                assert result.exit_code == 0, (words, underscored, result.output)


def test_train_takes_both_spellings_negative_numbers_and_the_column_option_of_every_command():
    from corewarding.training.settings import config_from_args

    config = config_from_args(
        "tiny/entropy",
        ["--learning-rate", "2e-5", "--max_steps=3", "--columns", "question=text",
         "--no_answer_penalty", "-7e0"],
    )
    assert (config.learning_rate, config.max_steps, config.dataset_columns, config.no_answer_penalty) == (
        2e-5, 3, "question=text", -7.0,
    )


def test_the_same_choice_has_the_same_option_names_in_every_command():
    from corewarding.training.settings import config_from_args

    def names(command: str, param: str) -> set[str]:
        return set(next(p for p in typer.main.get_command(app).commands[command].params if p.name == param).opts)

    # How many questions: eval's --limit and diagnose's --questions were two names for one choice.
    assert names("eval", "limit") == names("diagnose", "limit") == {"--limit", "--questions"}
    # Replacing what a folder holds: demo's --overwrite and train's --overwrite_output_dir.
    assert names("demo", "overwrite") == {"--overwrite", "--overwrite-output-dir"}
    for given in (["--overwrite"], ["--overwrite_output_dir"], ["--overwrite-output-dir", "true"]):
        assert config_from_args("tiny/majority_vote", given).overwrite_output_dir is True


@pytest.mark.parametrize("option", ["--columns", "--dataset-columns", "--dataset_columns"])
def test_the_column_mapping_is_one_option_everywhere(tmp_path, option):
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"text": "What is 2 + 3?", "gold": "5"}) + "\n")
    # validate-pairs reads the columns and then finds no rephrasing column: the mapping was understood.
    result = CliRunner().invoke(app, ["validate-pairs", str(path), option, "question=text,answer=gold"])
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"error: {path} has no rephrasing column: name it with --dataset-columns "
        "question=COL,rephrasing=COL, or pass the rephrasings file as a second argument"
    )


@pytest.mark.parametrize(
    "args, line",
    [
        (["eval", "tiny", "--bogus"], "error: No such option: --bogus"),
        (["eval"], "error: Missing argument 'model'."),
        (["evl"], "error: No such command 'evl'. Did you mean 'eval'?"),
        (["eval", "tiny", "--limit", "x"], "error: Invalid value for '--limit'"),
        (["rm", "train", "--bogus"], "error: No such option: --bogus"),
    ],
)
def test_a_usage_mistake_is_one_line_with_exit_code_2(args, line):
    done = corewarding(*args, blocked=True)
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith(line), done.stderr
    assert "--help" in done.stderr and "╭" not in done.stderr


# --- errors with their location, before heavy imports ---------------------------------------------------


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--max_steps", "ten"], "error: command line: --max_steps takes an integer, got 'ten'"),
        (["--learning-rate", "fast"], "error: command line: --learning_rate takes a number, got 'fast'"),
        (["--save_steps=0.5x"], "error: command line: --save_steps takes a number, got '0.5x'"),
        (["--max_steps", "-3"],
         "error: max_steps must be a positive number of steps, or -1 to train num_train_epochs epochs; got -3"),
        (["--dataset", "no/such/questions.jsonl"],
         "error: dataset: no such dataset file or folder: no/such/questions.jsonl"),
        (["--heldout_dataset", "missing.parquet"],
         "error: heldout_dataset: no such dataset file or folder: missing.parquet"),
    ],
)
def test_a_bad_number_or_missing_file_is_reported_before_trl_is_imported(args, line):
    done = corewarding("train", "--config", "tiny/majority_vote", *args, blocked=True)
    assert (done.returncode, done.stderr.strip()) == (2, line), done.stderr[-2000:]


def test_number_settings_take_numbers_of_their_type():
    from corewarding.training.settings import _check_numbers

    # A float setting takes an integer, scientific notation and a negative number; TRL's step settings are
    # floats (a ratio of the run below 1).
    _check_numbers({"learning_rate": "1e-4", "beta": "0", "no_answer_penalty": "-7", "save_steps": "0.1"})
    with pytest.raises(SettingError, match="--num_generations takes an integer, got '8.5'"):
        _check_numbers({"num_generations": "8.5"})


def test_a_malformed_recipe_is_reported_with_its_line_and_column(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("base: tiny/majority_vote\nmax_steps: 3\nlearning_rate: [1e-5\n")
    done = corewarding("train", "--config", str(recipe), blocked=True)
    assert done.returncode == 2
    assert done.stderr.strip().startswith(f"error: recipe {recipe.resolve()}:4:1: "), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args, line",
    [
        (["--method", "majority_votes"],
         "error: unknown method 'majority_votes' (did you mean majority_vote?)"),
        (["--answer_matching", "exactly"], "error: unknown answer_matching 'exactly' (did you mean exact?)"),
        (["--lerning-rate", "1"],
         "error: command line: unknown setting --lerning_rate (did you mean learning_rate?)"),
    ],
)
def test_train_mistakes_are_reported_before_torch_or_trl_is_imported(args, line):
    done = corewarding("train", "--config", "tiny/majority_vote", *args, blocked=True)
    assert (done.returncode, done.stderr.strip()) == (2, line)


@pytest.mark.parametrize(
    "args, line",
    [
        (["--methods", "majority_vot"], "error: unknown method 'majority_vot' (did you mean majority_vote?)"),
        (["--regime", "hardd"], "error: unknown regime 'hardd' (did you mean hard?)"),
        (["--model", "smollm"], "error: unknown model 'smollm' (did you mean smollm2?)"),
        (["-o", "README.md"], "error: demo output README.md is a file, not a folder"),
    ],
)
def test_demo_mistakes_are_reported_before_torch_is_imported(args, line):
    done = corewarding("demo", *args, blocked=True)
    assert (done.returncode, done.stderr.strip()) == (2, line), done.stderr[-2000:]


@pytest.mark.skipif(torch_runs_bf16(), reason="this machine runs bfloat16")
def test_bf16_on_a_machine_without_a_bf16_gpu_is_one_line_that_says_how():
    done = corewarding("train", "--config", "tiny/majority_vote", "--bf16", "true")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "error: bf16 is set and this machine has no GPU that runs bfloat16: pass --bf16 false to train in "
        "float32 here (a GPU recipe sets bf16: true)"
    )


@pytest.mark.parametrize(
    "args, line",
    [
        (["demo", "--methods", "majority_votes"],
         "error: unknown method 'majority_votes' (did you mean majority_vote?)"),
        (["pretrain", "--regime", "distracter"],
         "error: unknown regime 'distracter' (did you mean distractor?)"),
        (["eval", "tiny", "--matching", "exacts"],
         "error: unknown --matching 'exacts' (did you mean exact?)"),
    ],
)
def test_values_get_a_did_you_mean(args, line):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and result.output.strip().splitlines()[-1] == line


def test_an_unreachable_hub_fails_at_once_in_one_line(tmp_path):
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"question": "What is 2 + 3?", "answer": "5"}) + "\n")
    done = corewarding(
        "eval", "no-such-org/no-such-model", str(questions),
        env={"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "0"},
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: cannot load 'no-such-org/no-such-model': the hub (http://127.0.0.1:9) cannot be reached "
        "and the model is not in the local Hugging Face cache"
    )


# --- one temperature, one threads rule, quiet logs ------------------------------------------------------


def test_eval_samples_at_the_temperature_of_trainings_heldout_evaluation(tmp_path):
    from corewarding.training.config import CoRewardingConfig

    assert CoRewardingConfig().heldout_temperature == SAMPLING_TEMPERATURE
    out = tmp_path / "r.json"
    result = CliRunner().invoke(
        app,
        ["eval", "tiny", "synthetic", "--limit", "2", "-k", "2", "--max_new_tokens", "24", "-o", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["evaluation"]["temperature"] == SAMPLING_TEMPERATURE
    header = next(line for line in result.output.splitlines() if " T " in f" {line} ")
    row = result.output.splitlines()[result.output.splitlines().index(header) + 2]
    assert f"{SAMPLING_TEMPERATURE:g}" in row.split()


def test_the_threads_rule_leaves_the_cores_other_processes_use(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setattr(options, "busy_cores", lambda: 2.6)
    assert default_threads() == 5
    monkeypatch.setattr(options, "busy_cores", lambda: 11.0)
    assert default_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # torchrun's one thread per process: torch follows it
    assert default_threads() is None


def test_busy_cores_are_the_busy_share_of_the_ticks_now_not_the_lagging_load_average(tmp_path, monkeypatch):
    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal guest guest_nice, then one line per core
    stat.write_text("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 50 0 25 400 25 0 0 0 0 0\n"
                    "cpu1 50 0 25 400 25 0 0 0 0 0\nintr 1 2 3\n")
    assert options.cpu_ticks(stat) == (150, 1000, 2)
    assert options.cpu_ticks(tmp_path / "missing") is None
    # A minute-long job just ended: the load average still says 2, the cores are idle since.
    monkeypatch.setattr(os, "getloadavg", lambda: (2.0, 1.0, 0.5))
    snapshots = iter([(1000, 4000, 2), (1015, 4200, 2)])
    monkeypatch.setattr(options, "cpu_ticks", lambda: next(snapshots))
    assert options.busy_cores(window_s=0) == pytest.approx(15 / 200 * 2)
    snapshots = iter([(1000, 4000, 2), (1150, 4200, 2)])  # one core busy
    assert options.busy_cores(window_s=0) == pytest.approx(1.5)
    monkeypatch.setattr(options, "cpu_ticks", lambda: None)  # no /proc/stat (macOS): the load average
    assert options.busy_cores(window_s=0) == 2.0


def test_every_command_that_runs_torch_takes_the_one_threads_option():
    with_threads = []
    for words in commands():
        command = typer.main.get_command(app)
        for word in words:
            command = command.commands[word]
        threads = next((p for p in command.params if "--threads" in p.opts), None)
        if threads is not None:
            with_threads.append(" ".join(words))
            assert threads.default is None and "the cores no other process is using" in threads.help, words
    assert set(with_threads) == {
        "demo", "diagnose", "rephrase", "rm annotate", "rm train", "train", "eval", "pretrain",
    }


def test_eval_runs_torch_on_the_free_cores_by_default(monkeypatch):
    import torch

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(4)), raising=False)
    monkeypatch.setattr(options, "busy_cores", lambda: 1.2)
    before = torch.get_num_threads()
    try:
        command = ["eval", "tiny", "synthetic", "--limit", "1", "--max-new-tokens", "4"]
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 0, result.output
        assert torch.get_num_threads() == 3  # 4 cores, 1.2 of them busy
        result = CliRunner().invoke(app, [*command, "--threads", "2"])
        assert result.exit_code == 0 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
def test_a_training_run_piped_to_a_log_is_quiet_and_uncut(tmp_path):
    done = corewarding(
        "train", "--config", "tiny/majority_vote", "--max_steps", "2", "--max_heldout_problems", "4",
        "--heldout_samples", "1", "--output_dir", str(tmp_path / "run"), "--threads", "1",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Warning" not in done.stderr, done.stderr
    lines = done.stdout.splitlines()
    # A log gets plain lines as the run goes (a live display is drawn there only at the end) ...
    for step in (1, 2):
        line = next(x for x in lines if x.startswith(f"majority_vote step {step}/2: "))
        assert "reward " in line and "label acc " in line, line
    # ... and the live display's last state, uncut.
    progress = next(line for line in lines if line.startswith("majority_vote ") and " step " not in line)
    assert "label acc " in progress and "…" not in progress and "2/2" in progress, progress


def test_a_recipes_unknown_value_is_reported_with_its_file_and_line(tmp_path):
    recipe = tmp_path / "mine.yaml"
    recipe.write_text("base: tiny/_common\nmax_steps: 3\nmethod: majority_votes\n")
    done = corewarding("train", "--config", str(recipe), blocked=True)
    assert (done.returncode, done.stderr.strip()) == (
        2,
        f"error: recipe {recipe.resolve()}:3: unknown method 'majority_votes' (did you mean majority_vote?)",
    )
    # Given again on the command line, the value is the command line's, and so is the error.
    done = corewarding("train", "--config", str(recipe), "--method", "entropi", blocked=True)
    assert done.stderr.strip() == "error: unknown method 'entropi' (did you mean entropy?)"
