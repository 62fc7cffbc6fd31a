"""The report of a set of runs: the table's numbers and the figure, from constructed run folders."""

import json

import pytest
import yaml
from typer.testing import CliRunner

from corewarding.cli import app
from corewarding.report import (
    default_output,
    draw_curves,
    load_run,
    load_runs,
    markdown_table,
    summarize,
    write_report,
)


def make_run(folder, method, heldout, rewards, labels):
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({"method": method}))
    records = []
    for step, (reward, label) in enumerate(zip(rewards, labels), start=1):
        records.append(
            {"step": step, "reward": reward, "label_accuracy": label, "completions/mean_length": 20.0}
        )
    for step, accuracy in heldout.items():
        records.append(
            {"step": step, "eval_greedy_accuracy": accuracy, "eval_sampled_accuracy": accuracy / 2}
        )
    records.sort(key=lambda r: r["step"])
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


@pytest.fixture
def runs(tmp_path):
    steady = make_run(
        tmp_path / "cr2-seed0", "co_rewarding_ii", {0: 0.4, 10: 0.45, 20: 0.5}, [0.5] * 20, [0.5] * 20
    )
    steady1 = make_run(
        tmp_path / "cr2-seed1", "co_rewarding_ii", {0: 0.4, 10: 0.4, 20: 0.3}, [0.5] * 20, [0.6] * 20
    )
    collapsing = make_run(
        tmp_path / "mv", "majority_vote", {0: 0.4, 10: 0.3, 20: 0.1},
        [min(1.0, 0.5 + 0.05 * s) for s in range(20)], [max(0.0, 0.5 - 0.06 * s) for s in range(20)],
    )
    return [steady, steady1, collapsing]


def test_summary_numbers(runs):
    s = summarize(load_run(runs[0]))
    assert (s.method, s.steps, s.heldout_start, s.heldout_best, s.heldout_final) == (
        "co_rewarding_ii", 20, 0.4, 0.5, 0.5
    )
    assert s.sampled_final == 0.25 and s.label_accuracy == 0.5 and not s.collapse.collapsed
    mv = summarize(load_run(runs[2]))
    # Window 10: the label mean of steps 4..13 is 0.102, below half the early mean 0.234 (steps 1..10),
    # while the reward climbs; at 12 it is 0.14. It holds on, and counts after 5 steps: at 17.
    assert mv.collapse.collapsed and mv.collapse.step == 17
    assert mv.label_accuracy == pytest.approx(0.0)


def test_markdown_table_has_a_row_per_run_and_a_mean_row_per_repeated_method(runs):
    table = markdown_table([summarize(load_run(r)) for r in runs])
    rows = table.splitlines()[2:]
    assert len(rows) == 4
    assert rows[2].startswith(
        "| **cr2** (mean ± SD, n = 2) | co_rewarding_ii | 20 | 20.0 ± 0.0 | 20.0 ± 7.1 | 40.0 ± 0.0 | 45.0 ± 7.1 "
        "| 40.0 ± 14.1 |"
    )
    assert "0 of 2 runs" in rows[2]
    assert (
        rows[3].startswith("| mv | majority_vote |") and "step 17: reward_up_label_accuracy_down" in rows[3]
    )


def test_write_report_and_the_cli(runs, tmp_path):
    report, figure = write_report(runs, tmp_path / "out")
    assert figure.stat().st_size > 10_000 and figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![curves](curves.png)" in report.read_text()
    result = CliRunner().invoke(app, ["report", *map(str, runs), "-o", str(tmp_path / "cli")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cli" / "report.md").read_text() == report.read_text()
    # A folder of run folders stands for all of them.
    result = CliRunner().invoke(app, ["report", str(tmp_path), "-o", str(tmp_path / "parent")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "parent" / "report.md").read_text() == report.read_text()


def test_report_of_a_folder_without_metrics_is_a_one_line_error(tmp_path):
    result = CliRunner().invoke(app, ["report", str(tmp_path), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2 and "has no metrics.jsonl" in result.output


def test_runs_of_one_method_in_seed_folders_are_told_apart(tmp_path):
    for seed, final in ((0, 0.5), (1, 0.3)):
        make_run(
            tmp_path / f"seed-{seed}" / "co_rewarding_i", "co_rewarding_i", {0: 0.4, 20: final},
            [0.9] * 20, [0.5] * 20,
        )
    make_run(
        tmp_path / "seed-0" / "majority_vote", "majority_vote", {0: 0.4, 20: 0.4}, [0.8] * 20, [0.5] * 20
    )
    runs = load_runs([tmp_path / "seed-0", tmp_path / "seed-1"])
    assert [r.name for r in runs] == ["seed-0/co_rewarding_i", "majority_vote", "seed-1/co_rewarding_i"]
    rows = markdown_table([summarize(r) for r in runs]).splitlines()[2:]
    assert rows[2].startswith(
        "| **co_rewarding_i** (mean ± SD, n = 2) | co_rewarding_i | 20 | 20.0 ± 0.0 | 20.0 ± 7.1 | 40.0 ± 0.0 "
        "| 45.0 ± 7.1 | 40.0 ± 14.1 |"
    )
    assert "| 0.900 ± 0.000 |" in rows[2]


def test_recipes_of_one_method_stay_apart_and_unequal_lengths_are_said(tmp_path):
    make_run(
        tmp_path / "seed-0" / "majority_vote", "majority_vote", {0: 0.4, 20: 0.4}, [0.8] * 20, [0.5] * 20
    )
    make_run(
        tmp_path / "seed-1" / "majority_vote", "majority_vote", {0: 0.4, 10: 0.4}, [0.8] * 10, [0.5] * 10
    )
    make_run(
        tmp_path / "seed-0" / "majority_vote_rephrased", "majority_vote", {0: 0.4, 20: 0.2},
        [0.8] * 20, [0.5] * 20,
    )
    rows = markdown_table(
        [summarize(r) for r in load_runs([tmp_path / "seed-0", tmp_path / "seed-1"])]
    ).splitlines()[2:]
    mean = next(row for row in rows if row.startswith("| **majority_vote** (mean ± SD, n = 2)"))
    assert "| 10–20 (unequal!) |" in mean
    assert any(row.startswith("| majority_vote_rephrased | majority_vote | 20 |") for row in rows)


def test_a_hacked_reward_model_shows_in_the_table_like_every_collapse(tmp_path):
    folder = tmp_path / "cooper_static"
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump({"method": "cooper_static"}))
    records = [
        {"step": step, "reward": 0.8, "rollout_accuracy": 0.6, "rm/rule_agreement": 0.8,
         "rm/false_positive_rate": 0.05 if step <= 20 else 0.7}
        for step in range(1, 41)
    ]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    report, _ = write_report([folder], tmp_path / "out")
    row = next(line for line in report.read_text().splitlines() if line.startswith("| cooper_static |"))
    assert row.endswith("| step 31: rm_false_positives_up |")  # 7 of 10 steps at 0.7, held 5 steps


def make_label_free_run(folder, method="co_rewarding_ii", steps=20, heldout=True):
    """A run on questions without references: no label or rollout accuracy, held-out accuracy in a narrow
    band (56.8–57.3%) unless ``heldout`` is False, the label-free signals logged every step."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({"method": method}))
    records = [
        {"step": step, "reward": 0.6, "majority_ratio": 0.6 + 0.01 * step,
         "no_answer_rate": 0.002 * (step % 3), "teacher_policy_agreement": 0.8,
         "completions/mean_length": 20.0}
        for step in range(1, steps + 1)
    ]
    records += [
        {"step": step, "eval_greedy_accuracy": 0.568 + 0.0005 * step, "eval_sampled_accuracy": 0.57}
        for step in ((0, 10, 20) if heldout else ())
    ]
    records.sort(key=lambda r: r["step"])
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def test_the_caption_of_a_run_without_references_describes_only_what_it_has(tmp_path):
    run = make_label_free_run(tmp_path / "mine", heldout=False)
    report, _ = write_report([run], tmp_path / "out")
    text = report.read_text()
    assert "Held-out accuracy" not in text and "No run was evaluated on held-out problems" in text
    assert "Label accuracy" not in text and "Reward: mean of the last 5 logged steps" in text
    assert "The runs have no references: in place of label accuracy, the label-free signals" in text


def test_labelled_and_label_free_runs_in_one_report_keep_the_signals_and_say_whose(runs, tmp_path):
    mine = make_label_free_run(tmp_path / "mine", heldout=False)
    for run in runs:  # the labelled runs vote too: they log a majority ratio
        lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        for record in lines:
            if "reward" in record:
                record["majority_ratio"] = 0.7
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    report, _ = write_report([*runs, mine], tmp_path / "out")
    text = report.read_text()
    header = text.splitlines()[2]
    assert "label acc. %" in header and "majority ratio %" in header and "teacher agreement %" in header
    assert "Held-out accuracy on held-out problems" in text and "Label accuracy and reward: mean" in text
    assert "mine had no references: for them, in place of label accuracy, the label-free signals" in text
    titles = [ax.get_title() for ax in draw_curves(load_runs([*runs, mine])).axes]
    assert any(t.startswith("label accuracy") for t in titles)
    assert any(t.startswith("majority ratio") for t in titles)


def test_a_label_free_run_reports_its_signals_beside_itself_without_empty_panels(tmp_path):
    run = make_label_free_run(tmp_path / "runs" / "mine")
    result = CliRunner().invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    text = (run / "report.md").read_text()  # beside the run, not in the current folder
    assert (run / "curves.png").is_file() and not (tmp_path / "report.md").exists()
    header, _, row = text.splitlines()[2:5]
    assert header == (
        "| run | method | steps | sampled start % | sampled final % | greedy start % | greedy best % | "
        "greedy final % | majority ratio % | no answer % | teacher agreement % | reward | collapse |"
    )
    # Means of the last 5 steps: majority ratio 0.6 + 0.01 x (16..20), no answer 0.002 x (1, 2, 0, 1, 2).
    assert row.startswith(
        "| mine | co_rewarding_ii | 20 | 57.0 | 57.0 | 56.8 | 57.8 | 57.8 | 78.0 | 0.2 | 80.0 | 0.600 | no |"
    )
    assert "label acc. %" not in text and "no references" in text
    # In the terminal the signals get a table of their own, so that neither is cut at 80 columns.
    assert "label-free signals" in result.output and "maj. ratio" in result.output
    assert "…" not in result.output

    figure = draw_curves(load_runs([run]))
    titles = [ax.get_title() for ax in figure.axes]
    assert len(titles) == 7
    assert not any("label accuracy" in t or "rollouts that are right" in t for t in titles)
    assert any(t.startswith("majority ratio") for t in titles)
    assert any(t.startswith("rollouts without an answer") for t in titles)
    assert any(t.startswith("policy majority = teacher's label") for t in titles)
    figure.canvas.draw()
    for ax in figure.axes:
        if ax.get_ylabel().endswith("(%)"):
            ticks = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
            assert len(set(ticks)) == len(ticks) and all(t.endswith("%") for t in ticks), ticks
    greedy = next(ax for ax in figure.axes if ax.get_title() == "held-out accuracy, greedy")
    assert all("." in t.get_text() for t in greedy.get_yticklabels())  # a band of 1 point: 56.8%, 57.0%, …


def test_a_labelled_run_keeps_its_table_and_panels(runs):
    summaries = [summarize(load_run(r)) for r in runs]
    assert markdown_table(summaries).splitlines()[0] == (
        "| run | method | steps | sampled start % | sampled final % | greedy start % | greedy best % | "
        "greedy final % | label acc. % | reward | collapse |"
    )
    titles = [ax.get_title() for ax in draw_curves(load_runs(runs)).axes]
    # No rollout accuracy was logged: that panel alone is left out.
    assert [t.split(",")[0] for t in titles] == [
        "held-out accuracy", "held-out accuracy", "training reward",
        "label accuracy (pseudo-label = reference)", "completion length",
    ]


def test_the_report_of_several_runs_goes_to_the_folder_holding_them(tmp_path):
    first = make_label_free_run(tmp_path / "study" / "seed-0" / "cr2")
    second = make_label_free_run(tmp_path / "study" / "seed-1" / "cr2")
    result = CliRunner().invoke(app, ["report", str(first), str(second)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "study" / "report.md").is_file() and (tmp_path / "study" / "curves.png").is_file()
    assert "(mean ± SD, n = " in (tmp_path / "study" / "report.md").read_text()
    assert default_output([tmp_path / "study" / "seed-0"]) == first.resolve()
