"""The diagnosis: its measurements on hand-written answers, its verdict rules on hand-written measurements,
the probe's summary of a metric history, and `corewarding diagnose` itself on the tiny model."""

import json
from pathlib import Path

import pytest
from stub_openai_server import Reply, StubServer, good, problems, question, rephrasing
from typer.testing import CliRunner

from corewarding.cli import app
from corewarding.data.records import Problem
from corewarding.inference.generation import OpenAIBackend
from corewarding.diagnosis.measurements import (
    SampledAnswers,
    ViewAnswers,
    label_free_measurements,
    labelled_measurements,
)
from corewarding.diagnosis.probe import probe_recipe, probe_settings, summarize_probe
from corewarding.diagnosis.rephrasings import auto_pairs
from corewarding.diagnosis.verdict import (
    COLLAPSES,
    HELPS,
    LABEL_FREE_METHODS,
    NO_SIGNAL,
    SHARPENS,
    UNKNOWN,
    VerdictRules,
    judge,
)
from corewarding.training.settings import config_from_args

# Three questions, reference 4 each, k = 4. Question 0: both wordings' majorities right. Question 1: the
# wording's majority is the distracted 7, the rephrasing's right. Question 2: both wordings stop early
# at 2 (a shared, systematic error).
ANSWERS = SampledAnswers(
    question=ViewAnswers(
        greedy=["4", "7", "2"],
        samples=[["4", "4", "4", "5"], ["7", "7", "4", None], ["2", "2", "2", "2"]],
    ),
    teacher=[["4", "4", "3", "4"], ["7", "4", "7", "7"], ["2", "2", "2", "4"]],
    rephrasing=ViewAnswers(
        greedy=["4", "4", "2"],
        samples=[["4", "3", "4", "4"], ["4", "4", "4", "5"], ["2", "2", "3", "2"]],
    ),
)
REFERENCES = ["4", "4", "4"]


def test_label_free_measurements_by_hand():
    figures = label_free_measurements(ANSWERS, matching="exact")
    assert figures["num_questions"] == 3 and figures["k"] == 4
    # Majority counts 3, 2 and 4 of 4 (the missing answer counts in k).
    assert figures["majority_share"]["mean"] == pytest.approx((3 + 2 + 4) / 12)
    assert figures["majority_share"]["distribution"] == pytest.approx(
        {"0/4": 0, "1/4": 0, "2/4": 1 / 3, "3/4": 1 / 3, "4/4": 1 / 3}
    )
    assert figures["no_answer_rate"] == pytest.approx(1 / 12)
    # Entropies: 3:1 → 0.811 bits; 2:1 of the answered → 0.918 bits; all alike → 0.
    assert figures["answer_entropy_bits"] == pytest.approx((0.811278 + 0.918296 + 0) / 3, abs=1e-5)
    assert figures["teacher_agreement"] == 1.0  # 4, 7 and 2 again
    assert figures["cross_view_agreement"] == pytest.approx(2 / 3)  # question 1's majorities differ (7 / 4)


def test_labelled_measurements_by_hand():
    figures = labelled_measurements(ANSWERS, REFERENCES, matching="exact")
    question, rephrasing = figures["question"], figures["rephrasing"]
    assert question["greedy_accuracy"] == pytest.approx(1 / 3)
    assert question["avg_at_k"] == pytest.approx((3 / 4 + 1 / 4 + 0) / 3)
    assert question["maj_at_k"] == pytest.approx(1 / 3)
    assert question["headroom"] == pytest.approx(1 / 3 - 1 / 3)
    assert rephrasing["maj_at_k"] == pytest.approx(2 / 3)
    assert figures["label_accuracy"] == pytest.approx(
        {"majority_vote": 1 / 3, "co_rewarding_ii": 1 / 3, "co_rewarding_i": (1 / 3 + 2 / 3) / 2}
    )
    cross = figures["cross_view"]
    assert cross["other_right_own_wrong"] == pytest.approx({"question": 1 / 3, "rephrasing": 0.0})
    assert cross["gain"] == pytest.approx(1 / 6) and cross["both_wrong"] == pytest.approx(1 / 3)


def test_measurements_match_answers_by_equivalence():
    answers = SampledAnswers(ViewAnswers(["0.5"], [["1/2", "0.5", "\\frac{1}{2}", "3"]]),
                             [["0.5", "0.5", "1", "2"]], None)
    free = label_free_measurements(answers)
    assert free["majority_share"]["mean"] == 0.75 and free["teacher_agreement"] == 1.0
    assert free["cross_view_agreement"] is None
    labelled = labelled_measurements(answers, ["\\frac{1}{2}"])
    assert labelled["question"]["maj_at_k"] == 1.0 and labelled["cross_view"] is None
    assert labelled["label_accuracy"]["co_rewarding_i"] is None


def measured(avg=0.45, maj=0.65, teacher=0.63, both_wrong=0.12, gain=0.21, cross_label=0.67,
             agreement=0.5, teacher_agreement=0.87, no_answer=0.001, share=0.58, pass_at_8=0.86,
             probe=None) -> dict:
    """Hand-written measurements; the defaults are close to the distractor regime's."""
    return {
        "label_free": {
            "cross_view_agreement": agreement, "teacher_agreement": teacher_agreement,
            "no_answer_rate": no_answer, "majority_share": {"mean": share},
        },
        "labelled": {
            "question": {"avg_at_k": avg, "maj_at_k": maj, "pass_at_k": {"1": avg, "8": pass_at_8}},
            "label_accuracy": {
                "majority_vote": maj, "co_rewarding_ii": teacher, "co_rewarding_i": cross_label,
            },
            "cross_view": {"gain": gain, "both_wrong": both_wrong},
        },
        "probe": probe,
    }


def test_verdict_on_a_distractor_like_model_recommends_the_cross_view_methods_only():
    verdict = judge(measured())
    assert verdict.basis == "answers"
    assert verdict.recommended == ["co_rewarding_i", "co_rewarding_iii"]
    assert verdict.ranking.index("co_rewarding_i") < verdict.ranking.index("majority_vote")
    assert verdict.ranking.index("co_rewarding_ii") < verdict.ranking.index("majority_vote")
    assert verdict.methods["majority_vote"].expected == SHARPENS
    # The reason gives the numbers: 65% right, 20 of the 55 points, 27.5 needed (printed 28).
    assert "65%" in verdict.methods["majority_vote"].reason and "20 of the 55" in verdict.methods[
        "majority_vote"].reason
    assert set(verdict.ranking) == set(LABEL_FREE_METHODS)


def test_verdict_on_a_shortcut_like_model_recommends_nothing():
    verdict = judge(measured(avg=0.29, maj=0.35, teacher=0.35, both_wrong=0.61, gain=0.04, cross_label=0.35))
    assert verdict.recommended == []
    assert verdict.methods["co_rewarding_i"].expected == verdict.methods["majority_vote"].expected == SHARPENS


@pytest.mark.parametrize("maj, expected", [(0.71, HELPS), (0.69, SHARPENS)])
def test_majority_vote_helps_when_its_majority_closes_half_the_gap(maj, expected):
    # avg@k 0.4: the gap to 100% is 60 points, half of it 30: maj@k must reach 70%.
    assert judge(measured(avg=0.4, maj=maj)).methods["majority_vote"].expected == expected


def test_cross_view_labels_below_sixty_percent_right_do_not_help_even_with_a_high_ceiling():
    verdict = judge(measured(both_wrong=0.05, cross_label=0.55))
    assert verdict.methods["co_rewarding_i"].expected == SHARPENS
    assert "55%" in verdict.methods["co_rewarding_i"].reason and "co_rewarding_i" not in verdict.recommended


def test_without_rephrasings_the_cross_view_methods_are_unknown():
    data = measured()
    data["labelled"]["cross_view"] = None
    verdict = judge(data)
    assert verdict.methods["co_rewarding_i"].expected == UNKNOWN and "--pairs" in verdict.methods[
        "co_rewarding_i"].reason
    assert verdict.ranking[:2] == ["co_rewarding_ii", "majority_vote"]  # sharpens only, before unknown


def label_free(**figures) -> dict:
    return {**measured(**figures), "labelled": None}


def test_label_free_verdict_uses_the_cross_view_disagreement_in_excess_of_the_same_wordings():
    # distractor: the wordings' majorities differ on 55%, two draws of one wording on 13%: +42 points.
    helps = judge(label_free(agreement=0.45, teacher_agreement=0.87))
    assert helps.basis == "label-free" and helps.recommended == ["co_rewarding_i", "co_rewarding_iii"]
    assert "+42 points" in helps.methods["co_rewarding_i"].reason
    assert helps.reason.startswith("co_rewarding_i is expected to help")
    # The same cross-view disagreement from a model whose own draws disagree as much is noise.
    noisy = judge(label_free(agreement=0.45, teacher_agreement=0.62))
    assert noisy.recommended == [] and noisy.methods["co_rewarding_i"].expected == SHARPENS
    # shortcut: both small.
    assert judge(label_free(agreement=0.92, teacher_agreement=0.93)).recommended == []


def test_without_answers_every_voting_method_has_a_verdict_and_none_is_explained():
    verdict = judge(label_free(agreement=0.92, teacher_agreement=0.93))
    assert all(verdict.methods[m].expected != UNKNOWN for m in LABEL_FREE_METHODS)
    assert verdict.methods["majority_vote"].expected == SHARPENS
    assert verdict.methods["co_rewarding_ii"].expected == SHARPENS
    assert verdict.reason.startswith("none, because the best-ranked voting method, co_rewarding_i,")
    assert "+1 points" in verdict.reason


@pytest.mark.parametrize("with_answers", [True, False])
def test_an_unstable_majority_collapses_majority_vote_and_the_cross_view_methods(with_answers):
    # hard: the wordings' majorities differ on 66%, two draws of one wording on 64.5%; with answers its
    # ceilings say "sharpens only" for both, and both collapsed in 3 of 3 seeds.
    figures = dict(agreement=0.34, teacher_agreement=0.35, avg=0.30, maj=0.46, teacher=0.45, both_wrong=0.4,
                   cross_label=0.46)
    verdict = judge(measured(**figures) if with_answers else label_free(**figures))
    assert verdict.recommended == []
    for method in ("majority_vote", "co_rewarding_i", "co_rewarding_iii"):
        assert verdict.methods[method].expected == COLLAPSES and "35%" in verdict.methods[method].reason
    assert verdict.methods["co_rewarding_ii"].expected == SHARPENS
    assert verdict.ranking[0] == "co_rewarding_ii"


def test_an_unstable_majority_leaves_the_cross_view_methods_unknown_without_rephrasings():
    data = label_free(agreement=None, teacher_agreement=0.35)
    verdict = judge(data)
    assert verdict.methods["majority_vote"].expected == COLLAPSES
    assert verdict.methods["co_rewarding_i"].expected == UNKNOWN


@pytest.mark.parametrize("no_answer, share", [(0.6, 0.58), (0.0, 0.2)])
def test_a_model_that_cannot_do_the_questions_has_no_signal(no_answer, share):
    verdict = judge(label_free(no_answer=no_answer, share=share))
    assert verdict.recommended == []
    assert all(verdict.methods[m].expected == NO_SIGNAL for m in
               ("majority_vote", "co_rewarding_ii", "co_rewarding_i", "co_rewarding_iii"))
    assert "cannot do these questions" in verdict.reason


def test_with_answers_a_model_never_right_in_k_samples_has_no_signal():
    verdict = judge(measured(avg=0.0, maj=0.0, teacher=0.0, pass_at_8=0.04))
    assert verdict.recommended == [] and verdict.methods["majority_vote"].expected == NO_SIGNAL
    assert "a right answer is among its 8 samples on only 4% of the questions" in verdict.reason
    assert judge(measured(pass_at_8=0.06)).recommended == ["co_rewarding_i", "co_rewarding_iii"]


def test_just_above_the_cannot_do_thresholds_the_model_is_judged():
    assert judge(label_free(no_answer=0.4, share=0.3)).recommended == ["co_rewarding_i", "co_rewarding_iii"]


def test_a_flagged_probe_marks_majority_vote_as_collapsing():
    probe = {"collapse": {"collapsed": True, "step": 24, "reasons": ["dominant_answer"]}}
    verdict = judge(measured(probe=probe))
    assert verdict.methods["majority_vote"].expected == COLLAPSES
    assert "step 24 (dominant_answer)" in verdict.methods["majority_vote"].reason
    assert verdict.ranking.index("majority_vote") > verdict.ranking.index("co_rewarding_ii")


@pytest.mark.parametrize("key, first, last, words", [
    ("eval_greedy_accuracy", 0.92, 0.59, "held-out greedy accuracy fell 92% → 59%"),
    ("dominant_answer_share", 0.15, 0.40, "dominant answer's share of the batch rose 15% → 40%"),
])
def test_a_probe_trajectory_past_its_threshold_marks_majority_vote_as_collapsing(key, first, last, words):
    probe = {"collapse": {"collapsed": False}, "steps": 30, "first_last": {key: [first, last]}}
    verdict = judge(measured(probe=probe))
    assert verdict.methods["majority_vote"].expected == COLLAPSES and words in verdict.methods[
        "majority_vote"].reason
    calm = {"collapse": {"collapsed": False}, "steps": 30, "first_last": {key: [first, first - 0.05]}}
    assert judge(measured(probe=calm)).methods["majority_vote"].expected == SHARPENS


def test_the_protocol_file_states_every_threshold_of_the_rules():
    protocol = (Path(__file__).parent.parent / "docs" / "diagnose_protocol.md").read_text()
    for name, value in vars(VerdictRules()).items():
        assert f"`{name}` | {value} |" in protocol, name


def test_confidence_rewards_are_never_recommended():
    # Even on a model where every voting reward would help.
    verdict = judge(measured(avg=0.2, maj=0.9, teacher=0.9, both_wrong=0.01))
    assert {"majority_vote", "co_rewarding_ii", "co_rewarding_i"} <= set(verdict.recommended)
    assert verdict.methods["entropy"].expected == verdict.methods["self_certainty"].expected == COLLAPSES


def test_probe_summary_of_a_metric_history():
    records = [{"step": 0, "eval_greedy_accuracy": 0.5, "eval_sampled_accuracy": 0.4}]
    records += [
        {"step": s, "reward": 0.5 + 0.01 * s, "majority_ratio": 0.5 + 0.01 * s, "label_accuracy": 0.6,
         "dominant_answer_share": 0.1, "no_answer_rate": 0.0}
        for s in range(1, 13)
    ]
    records.append({"step": 12, "eval_greedy_accuracy": 0.45, "eval_sampled_accuracy": 0.42})
    summary = summarize_probe(records)
    assert summary["steps"] == 12 and summary["window"] == 4
    assert summary["first_last"]["majority_ratio"] == pytest.approx([0.525, 0.605])
    assert summary["first_last"]["eval_sampled_accuracy"] == [0.4, 0.42]
    assert summary["collapse"] == {"collapsed": False, "step": None, "reasons": []}


def test_probe_trains_on_the_diagnosed_questions_of_a_file(tmp_path):
    problems = [Problem(id=str(i), question=f"What is {i}+1?", answer=str(i + 1)) for i in range(3)]
    args = probe_settings("some/model", "mine.jsonl", problems, 30, tmp_path, seed=2)
    assert args[:2] == ["--config", "paper/majority_vote"]
    settings = dict(zip(args[2::2], args[3::2]))
    assert settings["--max_steps"] == "30" and settings["--eval_steps"] == "10" and settings["--seed"] == "2"
    assert settings["--dataset"] == settings["--heldout_dataset"] == str(tmp_path / "questions.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "questions.jsonl").read_text().splitlines()]
    assert rows[1] == {"id": "1", "question": "What is 1+1?", "answer": "2"}
    unlabelled = [Problem(id="a", question="Q?", answer=None)]
    synthetic = dict(zip(*[iter(probe_settings("some/model", "synthetic", [], 6, tmp_path, 0)[2:])] * 2))
    assert synthetic["--dataset"] == synthetic["--heldout_dataset"] == "synthetic"
    settings = dict(zip(*[iter(probe_settings("tiny", "q.jsonl", unlabelled, 6, tmp_path, 0)[2:])] * 2))
    assert settings["--heldout_dataset"] == "none" and settings["--eval_strategy"] == "no"
    assert settings["--dataset_columns"] == "question=question,id=id"


STORED = Path(__file__).parent.parent / "docs" / "results" / "diagnose"
#: The stored seed-0 diagnoses (docs/diagnose.md) and what each regime's study measured.
REGIMES = {
    "tiny": {"recommended": ["co_rewarding_i", "co_rewarding_iii"], "collapses": set()},
    "tiny-hard": {"recommended": [], "collapses": {"majority_vote", "co_rewarding_i"}},
    "tiny-shortcut": {"recommended": [], "collapses": set()},
}


@pytest.mark.parametrize("regime", REGIMES)
@pytest.mark.parametrize("with_answers", [True, False])
def test_the_stored_diagnoses_of_the_study_regimes_recommend_what_helped(regime, with_answers):
    measurements = json.loads((STORED / f"{regime}-seed0.json").read_text())["measurements"]
    verdict = judge(measurements if with_answers else {**measurements, "labelled": None})
    assert verdict.recommended == REGIMES[regime]["recommended"]
    for method in REGIMES[regime]["collapses"]:
        assert verdict.methods[method].expected == COLLAPSES, verdict.methods[method].reason


def test_the_stored_diagnosis_of_the_tiny_model_on_plain_english_sums_says_it_cannot_do_them():
    measurements = json.loads((STORED / "tiny-plain-english.json").read_text())["measurements"]
    verdict = judge(measurements)
    assert verdict.recommended == [] and verdict.methods["majority_vote"].expected == NO_SIGNAL
    assert "cannot do these questions" in verdict.reason
    # Without answers its consistent wrong answers are not caught: its unstable majority is.
    assert judge({**measurements, "labelled": None}).methods["majority_vote"].expected == COLLAPSES


def made_pairs(replies: dict, count: int, cache):
    with StubServer(lambda pair, attempt: replies.get(pair) or good(pair, attempt)) as server:
        engine = OpenAIBackend(server.url, "stub-model", api_key_env=None, max_attempts=1, timeout_s=10.0)
        return auto_pairs(problems(count), engine, cache)


def test_auto_pairs_keeps_the_valid_rephrasings_and_says_how_many(tmp_path):
    replies = {"1": Reply(content="Sorry, I cannot do that."),
               "2": Reply(content=f"[REPHRASED]\n{question('2')}\n[/REPHRASED]")}
    made = made_pairs(replies, 4, tmp_path / "cache.jsonl")
    assert [(p.id, p.rephrasing) for p in made.problems] == [("0", rephrasing("0")), ("3", rephrasing("3"))]
    assert (made.valid, made.total, made.rejected) == (2, 4, {"output": 1, "unchanged": 1})
    assert made.summary() == ("--pairs auto: 2 of 4 rephrasings valid (rejected by output 1, unchanged 1): "
                              "the diagnosis is of the 2 questions with a valid one")


def test_auto_pairs_without_a_valid_rephrasing_diagnose_every_question_without_one(tmp_path):
    made = made_pairs({str(i): Reply(content="no markers") for i in range(3)}, 3, tmp_path / "cache.jsonl")
    assert [p.id for p in made.problems] == ["0", "1", "2"]
    assert all(p.rephrasing is None for p in made.problems)
    assert made.summary().endswith("0 of 3 rephrasings valid (rejected by output 3): no cross-view figures")


def test_the_probe_recipe_fits_the_model_and_the_machine(tmp_path):
    (tmp_path / "pretrain.json").write_text("{}")  # a model folder `corewarding pretrain` made
    assert probe_recipe(str(tmp_path), cuda=False) == ("tiny/majority_vote", [])
    assert probe_recipe("tiny-shortcut", cuda=False) == ("tiny/majority_vote", [])
    assert probe_recipe("smollm2", cuda=False) == ("smollm2/majority_vote", [])
    assert probe_recipe("Qwen/Qwen3-1.7B-Base", cuda=True) == ("paper/majority_vote", [])
    recipe, machine = probe_recipe("Qwen/Qwen3-1.7B-Base", cuda=False)
    data = ["--dataset", "synthetic", "--heldout_dataset", "synthetic"]  # the recipe's MATH files are not here
    config = config_from_args(recipe, [*machine, "--output_dir", str(tmp_path / "run"), *data])
    assert not config.bf16 and not config.use_vllm  # TRL refuses bf16 without a GPU
    args = probe_settings("smollm2", "arithmetic", [], 2, tmp_path, 0, answers=["--system_prompt", ""])
    config = config_from_args(args[1], args[2:])
    assert (config.dataset, config.heldout_dataset, config.system_prompt) == ("arithmetic", "arithmetic", "")


@pytest.mark.slow
def test_diagnose_runs_on_a_cpu_for_a_model_folder_made_by_pretrain(tmp_path):
    folder = tmp_path / "mine"
    made = CliRunner().invoke(app, ["pretrain", "--steps", "2", "--batch-size", "4", "--eval-problems", "2",
                                    "--output", str(folder)])
    assert made.exit_code == 0, made.output
    out = tmp_path / "diagnosis.json"
    result = run_diagnose(str(folder), "synthetic", "--questions", "4", "-k", "2", "--probe-steps", "1",
                          "--json", str(out))
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    assert record["measurements"]["probe"]["recipe"] == "tiny/majority_vote"
    assert record["measurements"]["probe"]["steps"] == 1 and record["max_new_tokens"] == 48


def run_diagnose(*args: str):
    return CliRunner().invoke(app, ["diagnose", *args])


@pytest.mark.slow
def test_diagnose_command_on_the_tiny_model(tmp_path):
    out = tmp_path / "diagnosis.json"
    # --pairs auto: the synthetic questions carry their task's own rephrasings.
    result = run_diagnose("tiny", "synthetic", "--pairs", "auto", "--questions", "16", "-k", "4",
                          "--probe-steps", "2", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "Verdict (answers basis)" in result.output and "recommended:" in result.output
    record = json.loads(out.read_text())
    assert isinstance(record["recommended"], list) and set(record["ranking"]) == set(LABEL_FREE_METHODS)
    assert set(record["recommended"]) <= set(LABEL_FREE_METHODS)
    assert all(record["verdicts"][m]["expected"] == HELPS for m in record["recommended"])
    measurements = record["measurements"]
    assert measurements["label_free"]["num_questions"] == 16 and measurements["label_free"]["k"] == 4
    assert measurements["labelled"]["question"]["num_questions"] == 16
    assert measurements["labelled"]["cross_view"] is not None  # the synthetic questions' rephrasings
    assert measurements["probe"]["steps"] == 2 and measurements["probe"]["recipe"] == "tiny/majority_vote"
    assert record["max_new_tokens"] == 48  # the tiny recipe's completion length


@pytest.mark.slow
def test_diagnose_command_without_answers_says_what_can_be_known(tmp_path):
    path = tmp_path / "questions.jsonl"
    path.write_text("".join(json.dumps({"text": f"What is {i} plus {i + 2}?"}) + "\n" for i in range(10)))
    out = tmp_path / "diagnosis.json"
    result = run_diagnose("tiny", str(path), "--columns", "question=text", "-k", "2", "--probe-steps", "1",
                          "--json", str(out))
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    assert record["basis"] == "label-free" and record["measurements"]["labelled"] is None
    assert record["has_rephrasings"] is False
    assert record["recommended"] == []
    # Majority vote and Co-rewarding-II are judged without answers, and the "none" says why.
    assert UNKNOWN not in {record["verdicts"][m]["expected"] for m in ("majority_vote", "co_rewarding_ii")}
    assert record["reason"].startswith("none, because") and "why: none, because" in result.output
    free = record["measurements"]["label_free"]
    assert sum(free["majority_share"]["distribution"].values()) == pytest.approx(1.0)
    assert record["measurements"]["probe"]["first_last"]["eval_greedy_accuracy"] is None  # nothing to score


@pytest.mark.parametrize(
    "args, message",
    [
        (["{file}", "--columns", "question=problem"], "has no column 'problem'; columns"),
        (["{missing}"], "no such dataset file or folder"),
        (["{empty}"], "has no rows"),
        (["{unreadable}"], "unreadable.jsonl"),
        (["synthetic", "--pairs", "{file}"], "the synthetic questions come with their rephrasings"),
        (["{file}", "--pairs", "auto"], "a tiny model cannot rephrase"),
        (["synthetic", "-k", "1"], "Invalid value for '--samples'"),
        (["synthetic", "--json", "{folder}"], "is a folder"),
    ],
)
def test_diagnose_command_user_errors_are_one_line(tmp_path, args, message):
    path = tmp_path / "questions.jsonl"
    path.write_text(json.dumps({"question": "What is 2+3?", "answer": "#### 5"}) + "\n")
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "unreadable.jsonl").write_text("{not json\n")
    names = {"file": path, "missing": tmp_path / "missing.jsonl", "empty": tmp_path / "empty.jsonl",
             "unreadable": tmp_path / "unreadable.jsonl", "folder": tmp_path}
    result = run_diagnose("tiny", *[a.format(**names) for a in args])
    assert result.exit_code == 2
    assert message in result.output
    if not message.startswith("Invalid value"):  # typer's own usage errors have their box
        assert result.output.startswith("error: ") and len(result.output.strip().splitlines()) == 1
