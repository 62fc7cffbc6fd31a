"""The collapse monitor on constructed metric histories: collapsing ones flagged at the right step."""

import random

import pytest

from corewarding.core.collapse import CollapseMonitor, CollapseThresholds, detect_collapse

# One 5-step window and no persistence: a signal counts at the first step its formula holds, which
# is what the step arithmetic in the comments below works out. The defaults are tested further down.
FORMULA = CollapseThresholds(window=5, patience=1)

HEALTHY = {
    "reward": 0.5, "label_accuracy": 0.5, "entropy": 0.3, "completions/mean_length": 40.0,
    "completions/clipped_ratio": 0.02, "dominant_answer_share": 0.15, "answer_in_question_share": 0.05,
}


def history(steps: int, change=lambda step: {}, evals: dict | None = None) -> list[dict]:
    """Steps 1..steps of HEALTHY metrics, with ``change(step)`` applied; eval records where given."""
    records = []
    for step in range(1, steps + 1):
        records.append({"step": step, **HEALTHY, **change(step)})
        if evals and step in evals:
            records.append({"step": step, "eval_greedy_accuracy": evals[step]})
    return records


def test_a_healthy_run_is_not_flagged():
    # Noisy but steady, label accuracy improving, held-out accuracy wobbling around 0.4.
    wobble = lambda s: {"reward": 0.5 + 0.05 * (-1) ** s, "label_accuracy": 0.4 + 0.01 * s}  # noqa: E731
    report = detect_collapse(history(60, wobble, evals={0: 0.4, 20: 0.38, 40: 0.45, 60: 0.41}))
    assert not report.collapsed and report.step is None and report.reasons == []


def test_majority_vote_collapse_reward_saturates_while_labels_turn_wrong():
    # From step 11 the reward climbs to 1 while label accuracy falls to 0 (consistent wrong answers).
    def change(step):
        late = max(0, step - 10)
        return {"reward": min(1.0, 0.5 + 0.05 * late), "label_accuracy": max(0.0, 0.5 - 0.05 * late)}

    report = detect_collapse(history(40, change), FORMULA)
    # The label mean of steps s-4..s first drops below half the early 0.5 at s = 18 (0.3 ... 0.1: 0.2).
    assert report.collapsed and report.step == 18
    assert report.reasons == ["reward_up_label_accuracy_down"]


def test_entropy_collapse_and_runaway_length():
    def change(step):
        if step <= 20:
            return {}
        return {"entropy": 0.3 * 0.5 ** (step - 20), "completions/clipped_ratio": min(1.0, 0.1 * (step - 20))}

    report = detect_collapse(history(40, change), FORMULA)
    # Entropy mean over steps 21..25 = 0.3 x mean(0.5^1..0.5^5) = 0.058 < 0.25 x 0.3; at 24 it is 0.116.
    assert report.step == 25 and report.reasons == ["entropy_collapse"]
    monitor = CollapseMonitor(FORMULA)
    fired = {signal for record in history(40, change) for signal in monitor.update(record)}
    assert fired == {"entropy_collapse", "length_to_cap"}


def test_a_run_that_became_certain_and_right_has_not_collapsed():
    def change(step):
        return {} if step <= 20 else {"entropy": 0.3 * 0.5 ** (step - 20)}

    records = history(40, change)
    learnt = records + [{"step": 0, "eval_greedy_accuracy": 0.6}, {"step": 20, "eval_greedy_accuracy": 0.98}]
    learnt.sort(key=lambda r: r["step"])
    assert not detect_collapse(learnt, FORMULA).collapsed  # ground truth converging: certain, and right
    stuck = records + [{"step": 0, "eval_greedy_accuracy": 0.6}, {"step": 20, "eval_greedy_accuracy": 0.55}]
    stuck.sort(key=lambda r: r["step"])
    assert detect_collapse(stuck, FORMULA).reasons == ["entropy_collapse"]  # certain, and no better


def test_shrinking_answers_and_one_answer_for_everything():
    def change(step):
        if step <= 10:
            return {}
        return {"completions/mean_length": 8.0, "dominant_answer_share": 0.9}

    # Step 13 (window 9..13): answer share mean 0.6 >= 0.5, but length mean 20.8 is not yet < 20.
    report = detect_collapse(history(20, change), FORMULA)
    assert report.step == 13 and report.reasons == ["dominant_answer"]
    monitor = CollapseMonitor(FORMULA)
    firings = {r["step"]: monitor.update(r) for r in history(20, change)}
    assert firings[14] == ["length_shrink", "dominant_answer"]


def test_answers_echoing_the_question_are_flagged_without_labels():
    # The echo collapse of a last-number task (``23 + 20 = ?`` answers 20): from step 11 every answer is a
    # number of its own question, the views agree, the reward climbs; no label accuracy is logged.
    def change(step):
        echo = step > 10
        return {"reward": 0.9 if echo else 0.3, "answer_in_question_share": 0.95 if echo else 0.05,
                "label_accuracy": None}

    # Step 13 (window 9..13): share mean 0.59 >= 0.5 and >= 2x the early 0.05.
    report = detect_collapse(history(20, change), FORMULA)
    assert report.step == 13 and report.reasons == ["answer_from_question"]


def test_a_task_whose_answers_are_often_in_the_question_is_not_an_echo():
    # Half the answers are numbers of their question from the start: no rise, no signal.
    often = lambda step: {"answer_in_question_share": 0.5 + 0.05 * (-1) ** step}  # noqa: E731
    assert not detect_collapse(history(30, often), FORMULA).collapsed


def test_heldout_accuracy_falling_to_zero():
    report = detect_collapse(history(40, evals={0: 0.3, 10: 0.45, 20: 0.3, 30: 0.2, 40: 0.0}))
    assert report.step == 30 and report.reasons == ["heldout_accuracy_down"]  # 0.2 < half the best 0.45


def test_heldout_noise_near_zero_is_not_a_collapse():
    assert not detect_collapse(history(30, evals={0: 0.03, 10: 0.0, 20: 0.04, 30: 0.01})).collapsed


def test_nothing_fires_before_the_window():
    records = history(4, lambda s: {"entropy": 0.0})
    assert not detect_collapse(records, FORMULA).collapsed


@pytest.mark.parametrize("missing", ["label_accuracy", "entropy"])
def test_methods_without_a_metric_are_judged_on_the_others(missing):
    records = [{k: v for k, v in r.items() if k != missing} for r in history(30)]
    assert not detect_collapse(records).collapsed


def test_by_default_a_signal_counts_once_it_has_persisted():
    def change(step):
        late = max(0, step - 10)
        return {"reward": min(1.0, 0.5 + 0.05 * late), "label_accuracy": max(0.0, 0.5 - 0.05 * late)}

    # Window 10: the label mean of steps s-9..s first drops below half the early 0.5 at s = 20
    # (0.45 ... 0.05, 0: 0.225); it holds on, and counts after 5 consecutive steps, at 24.
    monitor = CollapseMonitor()
    firings = {r["step"]: monitor.update(r) for r in history(40, change)}
    assert monitor.report.step == 24 and monitor.report.reasons == ["reward_up_label_accuracy_down"]
    assert all(firings[s] == [] for s in range(1, 24)) and firings[24] == firings[40]


def test_label_noise_of_a_small_batch_is_not_a_collapse():
    # Stable runs: 8 questions a step, each label right with probability 0.4, reward steady near 0.95.
    def stable_run(seed):
        rng = random.Random(seed)
        return history(180, lambda s: {
            "reward": 0.95 + rng.uniform(-0.03, 0.03),
            "label_accuracy": sum(rng.random() < 0.4 for _ in range(8)) / 8,
        })

    runs = [stable_run(seed) for seed in range(12)]
    assert not any(detect_collapse(run).collapsed for run in runs)
    # Judged on single 5-step windows, the same noise looks like labels turning wrong in several runs.
    flagged = [detect_collapse(run, FORMULA) for run in runs]
    assert sum(r.reasons == ["reward_up_label_accuracy_down"] for r in flagged) >= 4


# ----------------------------------------------------------------------------------- reward-model methods

COOPER = {"reward": 0.7, "rollout_accuracy": 0.6, "rm/rule_agreement": 0.9, "rm/false_positive_rate": 0.05}


def cooper_history(steps: int, change) -> list[dict]:
    return [{"step": step, **COOPER, **change(step)} for step in range(1, steps + 1)]


def hacked(step):
    """Rollout accuracy climbs 0.515 → 0.8 by step 20 and falls 0.02 a step after; the reward climbs with
    it and then holds at 0.8: the reward model pays for what is no longer right."""
    return {
        "rollout_accuracy": 0.5 + 0.015 * min(step, 20) - 0.02 * max(0, step - 20),
        "reward": 0.5 + 0.015 * min(step, 20),
    }


def test_a_reward_that_holds_while_the_rollouts_turn_wrong_is_reward_hacking():
    report = detect_collapse(cooper_history(40, hacked), FORMULA)
    # The best 5-step accuracy mean is steps 17-21 (0.779, reward 0.791); at step 31 the mean of steps
    # 27-31 is 0.62 < 0.8 x 0.779 while the reward (0.8) has not fallen below 0.791. At 30 it is 0.64.
    assert report.step == 31 and report.reasons == ["reward_up_rollout_accuracy_down"]
    assert detect_collapse(cooper_history(40, hacked)).reasons == ["reward_up_rollout_accuracy_down"]


def test_a_reward_model_accepting_more_and_more_wrong_rollouts_is_reward_hacking():
    def change(step):
        return {} if step <= 20 else {"rm/false_positive_rate": 0.7}

    # The mean of steps 21-25 is 0.7 >= 0.5 and >= the early 0.05 + 0.25; at 24 it is 0.57, also enough.
    # With the defaults, 7 of 10 steps at 0.7 (step 27) make 0.505, and it holds 5 steps: step 31.
    assert detect_collapse(cooper_history(40, change), FORMULA).step == 24
    report = detect_collapse(cooper_history(40, change))
    assert report.step == 31 and report.reasons == ["rm_false_positives_up"]


def test_an_honest_reward_model_is_not_flagged():
    # the same rise and fall of rollout accuracy, but the reward falls with it
    def tracking(step):
        return {**hacked(step), "reward": hacked(step)["rollout_accuracy"]}

    assert not detect_collapse(cooper_history(40, tracking), FORMULA).collapsed
    # A reward model that was poor from the start has not been hacked during the run.
    assert not detect_collapse(cooper_history(40, lambda s: {"rm/false_positive_rate": 0.6})).collapsed


def test_the_false_positives_of_a_small_batch_are_not_a_collapse():
    # 8 questions x 8 rollouts, 60% right: about 26 wrong rollouts a step, each accepted with chance 0.3
    def run(seed):
        rng = random.Random(seed)

        def change(step):
            wrong = sum(rng.random() > 0.6 for _ in range(64))
            accepted = sum(rng.random() < 0.3 for _ in range(wrong))
            accuracy, false_positives = 1 - wrong / 64, accepted / wrong
            reward = accuracy + (1 - accuracy) * false_positives  # what σ(s) near 0 or 1 would pay
            return {"rollout_accuracy": accuracy, "reward": reward, "rm/false_positive_rate": false_positives}

        return cooper_history(180, change)

    assert not any(detect_collapse(run(seed)).collapsed for seed in range(12))


def test_the_reward_model_signals_watch_reward_model_methods_only():
    # majority voting logs rollout accuracy too, but no rm/ metrics: its signal is label accuracy
    records = [{k: v for k, v in r.items() if not k.startswith("rm/")} for r in cooper_history(40, hacked)]
    assert not detect_collapse(records, FORMULA).collapsed
