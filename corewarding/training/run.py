"""A training run from a :class:`~corewarding.training.config.CoRewardingConfig`: data, model, trainer, train.

This is what ``corewarding train --config recipe.yaml`` runs, and what the demo runs once per method.
A run folder holds one run: starting a run where one already is needs ``resume`` (continue it) or
``overwrite_output_dir`` (start over); anything else is refused before any work, so two runs' metrics
never mix in one ``metrics.jsonl``. The folder is locked for the life of the run
(:mod:`corewarding.core.folder_lock`), so a second run started into it at the same time is refused too;
and resuming a run that already reached its last step does nothing (:class:`RunFinished`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import TypeVar

import yaml
from datasets import Dataset
from transformers import AutoTokenizer, IntervalStrategy

from corewarding import checkpoints
from corewarding.cooper.negatives import STAND_IN
from corewarding.cooper.on_demand import make_reward_model, needs_making
from corewarding.core.atomic_files import write_atomically
from corewarding.core.errors import ReportedElsewhere, UserError
from corewarding.core.folder_lock import locked_folder
from corewarding.core.methods import METHODS, is_labelled
from corewarding.core.optional_packages import require, require_reporting
from corewarding.core.prompts import chat_messages
from corewarding.core.stop_signals import StoppedBySignal, stopping_on
from corewarding.data.arithmetic import ARITHMETIC, arithmetic_problems
from corewarding.data.loaders import load_problems, load_rephrased_pair
from corewarding.data.records import Problem
from corewarding.data.rephrasing_checks import validate_pairs
from corewarding.inference.model_names import tiny_model_dir
from corewarding.inference.models import load_model
from corewarding.tiny.familiarity import TASK_CHARS_PER_TOKEN, characters_per_token, reads_as_task
from corewarding.tiny.regimes import synthetic_problems
from corewarding.training.config import HELDOUT_SPLIT, CoRewardingConfig

__all__ = [
    "RunFinished",
    "TrainingDataError",
    "build_trainer",
    "check_integrations",
    "check_output_dir",
    "data_notes",
    "done_by_main_process",
    "finished_run",
    "heldout_problems",
    "heldout_split",
    "make_reward_model_if_asked",
    "prepare_run_folder",
    "stopped_message",
    "train",
    "training_dataset",
    "training_problems",
]

T = TypeVar("T")

#: Synthetic problems drawn for training when ``max_train_problems`` is not set.
SYNTHETIC_TRAIN_SIZE = 2000
#: Training questions whose tokenization tells whether they are the tiny model's task.
FAMILIARITY_SAMPLE = 200
#: What a run writes into its folder (besides checkpoint-* folders): removed by ``overwrite_output_dir``.
RUN_FILES = (
    "metrics.jsonl", "collapse.json", "config.yaml", "README.md", "base_model", "samples.jsonl",
    "assistant_negatives.jsonl",
)


def _say(line: str) -> None:
    """A line for the person running the training (stderr, as the run's other notes)."""
    print(line, file=sys.stderr, flush=True)


class TrainingDataError(UserError):
    """The training data cannot be used as configured (one line, for the CLI)."""


class RunFinished(Exception):
    """The run to resume already reached its last step: nothing to do (one line, for the CLI; not an
    error)."""


def training_problems(config: CoRewardingConfig) -> list[Problem]:
    """The configured training problems: the synthetic train split, or a dataset file; in test-time
    training, the held-out problems themselves (their answers reach no label-free reward).

    In a semi-supervised run (``labelled_fraction``) every labelled question needs its reference answer.
    """
    problems = _training_problems(config)
    if config.labelled_fraction:
        unanswered = [
            p.id
            for p in problems
            if p.answer is None and is_labelled(p.id, config.labelled_fraction, config.seed)
        ]
        if unanswered:
            raise TrainingDataError(
                f"labelled_fraction {config.labelled_fraction}: {len(unanswered)} labelled questions have no "
                f"reference answer (first: {unanswered[0]}); name the answer column in dataset_columns"
            )
    return problems


def _training_problems(config: CoRewardingConfig) -> list[Problem]:
    if config.test_time_training:
        return heldout_problems(config)
    problems = _dataset_problems(config)
    if config.heldout_dataset == HELDOUT_SPLIT:
        held = {p.id for p in heldout_split(problems, config.heldout_fraction, config.max_heldout_problems)}
        problems = [p for p in problems if p.id not in held]
    return problems[: config.max_train_problems] if config.max_train_problems else problems


def _dataset_problems(config: CoRewardingConfig) -> list[Problem]:
    """The problems of ``dataset`` (with its rephrasings): a draw of the train split of a generated task
    (``synthetic``, ``arithmetic``), or a file."""
    if config.dataset == "synthetic":
        return synthetic_problems(
            config.model_name_or_path,
            config.max_train_problems or SYNTHETIC_TRAIN_SIZE,
            "train",
            seed=config.seed,
        )
    if config.dataset == ARITHMETIC:
        return arithmetic_problems(config.max_train_problems, "train", seed=config.seed)
    if config.dataset_rephrasings:
        return load_rephrased_pair(config.dataset, config.dataset_rephrasings, config.dataset_columns)
    return load_problems(config.dataset, config.dataset_columns)


def heldout_split(problems: list[Problem], fraction: float, most: int) -> list[Problem]:
    """The held-out split of a training set (``heldout_dataset: split``): round(fraction × n) of its n
    questions that have an answer, at most ``most``, in the dataset's order. Chosen by a hash of the
    question's id, not by position or seed: the same questions whatever the seed, the order of the rows
    or the method, so that runs compare on one held-out set."""
    answered = [p for p in problems if p.answer is not None]
    count = min(most, round(fraction * len(answered)))
    ranked = sorted(answered, key=lambda p: hashlib.sha256(p.id.encode()).hexdigest())
    ids = {p.id for p in ranked[:count]}
    return [p for p in answered if p.id in ids]


def heldout_problems(config: CoRewardingConfig) -> list[Problem]:
    """The problems held-out accuracy is measured on (empty when none are configured, or when the
    ``split`` of a dataset without answers is empty)."""
    if config.heldout_dataset is None:
        return []
    if config.heldout_dataset == "synthetic":
        return synthetic_problems(
            config.model_name_or_path, config.max_heldout_problems, "test", seed=config.seed
        )
    if config.heldout_dataset == ARITHMETIC:
        return arithmetic_problems(config.max_heldout_problems, "test", seed=config.seed)
    if config.heldout_dataset == HELDOUT_SPLIT:
        return heldout_split(_dataset_problems(config), config.heldout_fraction, config.max_heldout_problems)
    # In test-time training the held-out file is the training data: the same column mapping reads it.
    columns = config.dataset_columns if config.test_time_training else None
    problems = [p for p in load_problems(config.heldout_dataset, columns) if p.answer is not None]
    return problems[: config.max_heldout_problems]


def data_notes(
    config: CoRewardingConfig, train: list[Problem], heldout: list[Problem], tokenizer
) -> list[str]:
    """One line each for what a user of their own data should know before the run: where held-out
    accuracy comes from (a split of their questions, or none without answers), and that the tiny model
    cannot read questions that are not its synthetic task
    (:func:`corewarding.tiny.familiarity.reads_as_task`)."""
    notes = []
    if config.heldout_dataset == HELDOUT_SPLIT and not config.test_time_training:
        if heldout:
            notes.append(
                f"held-out accuracy: on {len(heldout)} questions of {config.dataset} with an answer, kept "
                f"out of training (heldout_fraction {config.heldout_fraction}; or set heldout_dataset)"
            )
        else:
            notes.append(
                f"no held-out accuracy: {config.dataset} has no questions with an answer to hold out (name "
                "its answer column in dataset_columns, answer=COL, or set heldout_dataset)"
            )
    if tiny_model_dir(config.model_name_or_path) and config.dataset != "synthetic":
        questions = [p.question for p in train[:FAMILIARITY_SAMPLE]]
        if questions and not reads_as_task(tokenizer, questions):
            notes.append(
                f"warning: the tiny model reads only its synthetic arithmetic task, and the questions of "
                f"{config.dataset} are not it ({characters_per_token(tokenizer, questions):.1f} characters "
                f"a token against at least {TASK_CHARS_PER_TOKEN:g} on its task): its rewards and accuracy "
                "on them mean little; train a real model (--model_name_or_path, e.g. Qwen/Qwen3-1.7B-Base)"
            )
    return notes


def training_dataset(
    problems: list[Problem],
    method: str,
    system_prompt: str | None,
    allow_invalid_rephrasings: bool = False,
    view: str = "original",
) -> Dataset:
    """Rows for :class:`~corewarding.training.trainer.CoRewardingTrainer`: prompt, question_id, view, answer.

    A method with paired views (``co_rewarding_i``) gets two rows per problem, its question (view 0) at
    row 2k and its rephrasing (view 1) at row 2k+1; other methods get one row per problem: its question,
    or with ``view="rephrased"`` its rephrasing; a teacher that samples the rephrasing
    (``co_rewarding_iii``) finds it in ``teacher_prompt``. A needed rephrasing that is missing, or that the
    validator rejected (unless ``allow_invalid_rephrasings``), is refused; so is a problem without a
    reference answer for a method whose reward reads it.
    """
    if not problems:
        raise TrainingDataError("the training set is empty")
    spec = METHODS[method]
    if spec.needs_references:
        missing = [p.id for p in problems if p.answer is None]
        if missing:
            raise TrainingDataError(
                f"{method} reads the reference answer: {len(missing)} of {len(problems)} problems have none "
                f"(first: {missing[0]})"
            )
    views = (0, 1) if spec.paired_views else ((1,) if view == "rephrased" else (0,))
    if 1 in views or spec.teacher_on_rephrasing:
        missing = [p.id for p in problems if not p.rephrasing]
        if missing:
            raise TrainingDataError(
                f"{method} on rephrasings needs one for every question: {len(missing)} of {len(problems)} "
                f"have none (first: {missing[0]}); set dataset_rephrasings or use a dataset with a "
                "rephrasing column"
            )
        # Pairs nobody checked yet (a rephrasings file aligned row by row) get the validator's text checks
        # now: a placeholder echo or an unchanged copy is no second view.
        unchecked = [p for p in problems if p.rephrasing_valid is None]
        reports = validate_pairs(unchecked) if unchecked else []
        reasons = {r.id: ", ".join(r.rejected_by) for r in reports if not r.valid}
        reasons.update(
            {p.id: "rejected when the pairs were made" for p in problems if p.rephrasing_valid is False}
        )
        if reasons and not allow_invalid_rephrasings:
            first = next(iter(reasons.items()))
            raise TrainingDataError(
                f"{len(reasons)} of {len(problems)} rephrasings fail the validator "
                f"(first: {first[0]}: {first[1]}); drop them (corewarding validate-pairs … --only-valid), "
                "or set allow_invalid_rephrasings=true to train on them anyway"
            )
    rows = [
        {
            "prompt": chat_messages(problem.rephrasing if v else problem.question, system_prompt),
            "question_id": problem.id, "view": v, "answer": problem.answer,
            **(
                {"teacher_prompt": chat_messages(problem.rephrasing, system_prompt)}
                if spec.teacher_on_rephrasing else {}
            ),
        }
        for problem in problems
        for v in views
    ]
    return Dataset.from_list(rows)


def check_output_dir(output_dir: str | os.PathLike) -> None:
    """The run folder must be a folder (or not exist yet) in a writable place."""
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"output_dir {out} is a file, not a folder")
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(f"output_dir {out}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK):
        raise PermissionError(f"cannot write to output_dir {out}: {existing} is read-only")


def check_integrations(config: CoRewardingConfig) -> None:
    """The optional packages the settings ask for (``report_to``, ``use_vllm``, an assistant on vLLM) are
    installed: a missing one is one line before any data or model is loaded, not TRL's error after. Not
    a check of the config itself: a recipe names them for the GPU machine it is meant for."""
    require_reporting(config.report_to)
    if config.use_vllm:
        require("vllm", "use_vllm")
    assistant = config.negative_source != "rollouts" and config.assistant_model != STAND_IN
    if assistant and config.assistant_backend == "vllm":
        require("vllm", "assistant_backend vllm")


def prepare_run_folder(config: CoRewardingConfig, resume: str | None) -> str | None:
    """Check the run folder before any work; returns the checkpoint to resume from (or None).

    A folder that holds a run is refused unless the run is resumed or ``overwrite_output_dir`` is set,
    in which case what a run writes there is deleted first. :func:`train` calls it holding the folder's
    lock, after :func:`check_output_dir`.
    """
    out = Path(config.output_dir)
    checkpoint = checkpoints.resolve_resume(resume, out, config.method)
    if checkpoint is None and out.is_dir():
        found = [
            p.name for p in sorted(out.iterdir()) if p.name in RUN_FILES or p.name.startswith("checkpoint-")
        ]
        if found and not config.overwrite_output_dir:
            raise FileExistsError(
                f"{out} already holds a run ({', '.join(found[:3])}{', …' if len(found) > 3 else ''}): "
                "continue it with --resume last, start over with --overwrite_output_dir true, or choose "
                "another --output_dir"
            )
        for name in found:
            path = out / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    return checkpoint


def make_reward_model_if_asked(config: CoRewardingConfig, progress=None) -> None:
    """With ``make_reward_model``, Cooper's reward model and its labelled data when ``reward_model_path``
    holds none yet (:func:`corewarding.cooper.on_demand.make_reward_model`, the policy's task). A live
    ``progress`` display is paused meanwhile: the two steps show their own bars."""
    wanted = config.make_reward_model and METHODS[config.method].reward_model
    # `tiny` names the shipped backbone (a fresh head), not a folder to make.
    if not wanted or tiny_model_dir(config.reward_model_path) or not needs_making(config.reward_model_path):
        return
    if tiny_model_dir(config.model_name_or_path) is None:
        raise UserError(
            "make_reward_model makes a reward model for a tiny policy only, not "
            f"{config.model_name_or_path}: make one with `corewarding rm annotate` and `corewarding rm "
            "train`, then set reward_model_path"
        )
    if progress is not None:
        progress.stop()
    try:
        make_reward_model(
            config.reward_model_path, config.reward_model_eval_data, config.model_name_or_path, say=_say
        )
    finally:
        if progress is not None:
            progress.start()


def build_trainer(config: CoRewardingConfig, progress=None):
    """Load the data and the model of ``config`` and make the trainer (not yet trained); ``progress``: the
    live display of the run, paused while a reward model is made (:func:`make_reward_model_if_asked`).

    The data comes first: a missing file or column is reported before seconds of model loading.
    """
    from corewarding.training.trainer import CoRewardingTrainer  # TRL is imported only when a trainer is made

    problems = training_problems(config)
    train_data = training_dataset(
        problems, config.method, config.system_prompt, config.allow_invalid_rephrasings, config.training_view,
    )
    prompts_per_batch = config.generation_batch_size // config.num_generations
    if len(train_data) < prompts_per_batch:
        raise TrainingDataError(
            f"the training set has {len(train_data)} prompts, fewer than one generation batch "
            f"({prompts_per_batch} prompts of {config.num_generations} rollouts): add data or lower "
            "per_device_train_batch_size"
        )
    make_reward_model_if_asked(config, progress)
    heldout = heldout_problems(config)
    if not heldout and config.eval_strategy != "no":
        if config.stop_on_collapse and not config.test_time_training:
            raise TrainingDataError(
                "stop_on_collapse keeps the best checkpoint by held-out accuracy, and there are no held-out "
                "questions with an answer: set heldout_dataset"
            )
        # Nothing to evaluate (data_notes says why), and TRL refuses an evaluation without data.
        config.eval_strategy = IntervalStrategy.NO
    eval_data = training_dataset(heldout, "ground_truth", config.system_prompt) if heldout else None
    model, tokenizer = load_model(config.model_name_or_path, device="cpu")
    if config.process_index == 0:
        for note in data_notes(config, problems, heldout, tokenizer):
            _say(note)
    if config.model_name_or_path.endswith(".gguf") and config.beta > 0:
        # With a KL term TRL rebuilds the reference model from the policy's folder, which a GGUF file is
        # not: write the dequantised model once as a plain folder and train from that.
        folder = Path(config.output_dir) / "base_model"
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        model, tokenizer = load_model(folder, device="cpu")
    return CoRewardingTrainer(
        model=model, args=config, train_dataset=train_data, eval_dataset=eval_data,
        processing_class=tokenizer, heldout=heldout,
    )


def finished_run(config: CoRewardingConfig, checkpoint: str) -> str | None:
    """Why resuming from ``checkpoint`` would train nothing (the run reached ``max_steps``, or with
    ``max_steps: -1`` its epochs), or None. A larger ``max_steps`` extends a finished run."""
    state = json.loads((Path(checkpoint) / "trainer_state.json").read_text())
    step = state["global_step"]
    if config.max_steps > 0:
        finished, goal = step >= config.max_steps, f"max_steps {config.max_steps}"
    else:
        finished = step >= state["max_steps"] and config.num_train_epochs <= state["num_train_epochs"]
        goal = f"num_train_epochs {config.num_train_epochs}"
    if not finished:
        return None
    return (
        f"nothing to train: {checkpoint} is at step {step}, the end of its run ({goal}); a larger "
        "--max_steps extends it"
    )


def train(config: CoRewardingConfig, resume: str | None = None, progress=None):
    """Run training: the run folder locked for the run, checked (:func:`prepare_run_folder`), the config
    saved as ``config.yaml``, then resumed from ``resume`` (a checkpoint folder or ``"last"``) or
    started. With ``progress`` (a :func:`~corewarding.training.progress.progress_display`) the run shows
    there instead of TRL's per-step printing. The final model and tokenizer are saved in the run folder.
    Returns the trainer; raises :class:`RunFinished` when the run to resume is already at its end, and
    :class:`~corewarding.core.stop_signals.StoppedBySignal` when a signal of ``stop_signals`` stopped it
    at a step's end (its checkpoint written; the final model is not published).

    Under torchrun / accelerate launch every process of the run calls this; its main process holds the
    lock and prepares the folder, the others take its answer (:func:`done_by_main_process`). A process
    alone in its world — a second launch, or a process a launcher left out of the run — is a main
    process: it asks for the lock itself, and is refused while another run holds it."""
    check_output_dir(config.output_dir)
    check_integrations(config)
    main_process = config.process_index == 0
    with ExitStack() as held:

        def claim_folder() -> str | None:
            held.enter_context(locked_folder(config.output_dir, "choose another --output_dir"))
            return prepare_run_folder(config, resume)

        checkpoint = done_by_main_process(config, claim_folder)
        finished = finished_run(config, checkpoint) if checkpoint else None
        if checkpoint and not finished and main_process:
            _say(f"resuming from {checkpoint}")
        if finished:
            if main_process:
                publish_final_model(checkpoint, config.output_dir, only_if_incomplete=True)
            raise RunFinished(finished)
        trainer = build_trainer(config, progress)
        Path(config.output_dir).mkdir(parents=True, exist_ok=True)
        if progress is not None:
            from corewarding.training.progress import show_progress

            show_progress(trainer, progress, config.method)
        if main_process:  # one writer: every process renaming its own copy into place raced
            settings = yaml.safe_dump(config.to_dict(), sort_keys=True)
            write_atomically(Path(config.output_dir) / "config.yaml", settings)
        with stopping_on(config.stop_signals, config.stop_grace_seconds):
            trainer.train(resume_from_checkpoint=checkpoint)
        if trainer.stop_on_signal.stopped_by:
            trainer.accelerator.end_training()
            raise StoppedBySignal(stopped_message(trainer) if trainer.is_world_process_zero() else "")
        # The final policy and its tokenizer in the run folder, as TRL leaves them: `corewarding eval RUN`,
        # `--model_name_or_path RUN` and `from_pretrained(RUN)` read it. Every process saves (DeepSpeed
        # gathers, FSDP writes shards); the main one publishes the files once all have written.
        main, wait = trainer.is_world_process_zero(), trainer.accelerator.wait_for_everyone
        with checkpoints.published_into(config.output_dir, main, wait) as staging:
            trainer.save_model(str(staging))
    return trainer


def done_by_main_process(config: CoRewardingConfig, work: Callable[[], T]) -> T:
    """``work()`` run by the main process of ``config``'s run alone; every process returns its result.

    When it fails, the main process raises its error and every other one a :class:`ReportedElsewhere`
    with the same message (the main process prints it; the others end without repeating it)."""
    if config.world_size == 1:
        return work()
    import torch.distributed as dist

    outcome: list = [None, None]
    if config.process_index == 0:
        try:
            outcome[0] = work()
        except Exception as error:
            dist.broadcast_object_list([None, str(error).strip() or type(error).__name__], src=0)
            raise
    dist.broadcast_object_list(outcome, src=0)
    if outcome[1] is not None:
        raise ReportedElsewhere(f"the main process of the run stopped: {outcome[1]}")
    return outcome[0]


def stopped_message(trainer) -> str:
    """The line of a run stopped by a signal: where it stopped, its checkpoint, how to go on."""
    step, out = trainer.state.global_step, Path(trainer.args.output_dir)
    saved = checkpoints.complete_checkpoints(out)
    if saved and checkpoints.is_complete(out / f"checkpoint-{step}"):
        kept = f"checkpoint {out / f'checkpoint-{step}'} written"
    else:
        kept = f"no checkpoint written (save_strategy {trainer.args.save_strategy}); " + (
            f"the last is {saved[-1]}" if saved else "none to resume from"
        )
    return (
        f"stopped by {trainer.stop_on_signal.stopped_by} at step {step} of {trainer.state.max_steps}: "
        f"{kept}; go on with the same command and --resume last"
    )


def publish_final_model(checkpoint: str | Path, output_dir: str | Path, only_if_incomplete: bool = False) -> None:
    """The final model and tokenizer of ``checkpoint`` into ``output_dir`` (file by file, never half
    written); with ``only_if_incomplete``, only when a crash cut the last publication short (its staging
    folder is left, or no model is there yet)."""
    output_dir, checkpoint = Path(output_dir), Path(checkpoint)
    lora = (checkpoint / "adapter_config.json").is_file()
    weights = "adapter_model.safetensors" if lora else "model.safetensors"
    complete = (output_dir / weights).is_file() and not (output_dir / ".final-model").exists()
    if only_if_incomplete and complete:
        return
    with checkpoints.published_into(output_dir) as staging:
        if lora:  # its adapter as TRL saved it, and peft's folder of each further adapter (the teacher's)
            shutil.copy2(checkpoint / "adapter_config.json", staging)
            shutil.copy2(checkpoint / weights, staging)
            for folder in checkpoint.iterdir():
                if (folder / "adapter_config.json").is_file():
                    shutil.copytree(folder, staging / folder.name)
            tokenizer = AutoTokenizer.from_pretrained(checkpoint)
        else:
            model, tokenizer = load_model(checkpoint, device="cpu")
            model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
