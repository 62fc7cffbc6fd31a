"""Why entropy minimisation's token entropy *rises* on the tiny model: controls, anatomy, a RENT-like run.

Entropy minimisation (RENT / EM-RL) rewards r_i = −mean_t H(p_t) of rollout i, and GRPO's advantage is
A_i = (r_i − mean_g r) / std_g r over the rollout's group g. On the distractor regime the policy's token
entropy goes *up* under this reward (docs/results.md). Two parts:

* ``anatomy`` (no training): samples G rollouts of the shipped model for a set of questions and
  measures what the reward sees — the rollouts' mean entropies, their spread within a group, how much
  of a rollout's entropy sits in its single most uncertain token — and what the update does with it:
  the parameter-gradient norm of each rollout's GRPO term A_i · mean_t log p(y_t), for the rollouts
  pushed down (A_i < 0, the high-entropy ones) against those pushed up.
* ``runs``: short training runs of the shipped ``tiny/entropy`` recipe and controls that change one
  thing each — the reward replaced by N(0, 1) noise, the entropy reward with a random sign per group
  (so its direction carries no information), the sign flipped (entropy *maximisation*), a lower
  learning rate, the advantage without its division by the group's standard deviation, and a RENT-like setting (no std scaling of the advantage, a KL term, a lower learning
  rate, a longer run). Prints token entropy at the start and the end of each run, held-out accuracy and
  length, and draws token entropy over the steps.

    PYTHONPATH=. python benchmarks/entropy_controls.py anatomy --questions 64
    PYTHONPATH=. python benchmarks/entropy_controls.py runs -o runs/entropy_controls

The controls swap the ``entropy`` entry of :data:`corewarding.core.methods.METHODS` for the run's
duration (this process only), so everything else — sampling, token statistics, the GRPO loss — is the
trainer's own.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import random
import statistics
from pathlib import Path

import torch

from corewarding.core import methods
from corewarding.core.collapse import read_metrics
from corewarding.core.metric_names import HELDOUT_SAMPLED, MEAN_LENGTH
from corewarding.core.prompts import chat_messages
from corewarding.core.rewards import RewardResult
from corewarding.inference.models import load_model
from corewarding.tiny.regimes import synthetic_problems

#: (name, what it changes, reward transform or None, config overrides, steps)
VARIANTS = (
    ("entropy", "the shipped recipe: r = −H, group-std advantage, lr 1e-4", None, {}, 120),
    ("random_normal", "r ~ N(0, 1), the entropy ignored", "normal", {}, 120),
    ("entropy_random_sign", "r = ±H, one random sign per group and step", "random_sign", {}, 120),
    ("entropy_maximisation", "r = +H", "maximise", {}, 120),
    ("entropy_lr3e-5", "lr 3e-5", None, {"learning_rate": 3e-5}, 120),
    ("entropy_lr1e-5", "lr 1e-5", None, {"learning_rate": 1e-5}, 120),
    ("entropy_no_std_scaling", "advantage r − mean_g r, not divided by std_g r", None,
     {"scale_rewards": "none"}, 120),
    ("rent_like", "no std scaling, KL β = 0.04, lr 1e-5, 360 steps", None,
     {"scale_rewards": "none", "beta": 0.04, "learning_rate": 1e-5}, 360),
)


def transformed_reward(kind: str, seed: int):
    """The entropy method's reward function with its values transformed (``kind``: normal, random_sign,
    maximise); the metrics stay those of the entropy reward."""
    original = methods.METHODS["entropy"].reward
    rng = random.Random(seed)

    def reward(rollouts, inputs) -> RewardResult:
        result = original(rollouts, inputs)
        if kind == "normal":
            values = [rng.gauss(0.0, 1.0) for _ in result.rewards]
        elif kind == "maximise":
            values = [-r for r in result.rewards]
        else:
            signs = {q: rng.choice((-1.0, 1.0)) for q in dict.fromkeys(rollouts.question_ids)}
            values = [signs[q] * r for q, r in zip(rollouts.question_ids, result.rewards)]
        return RewardResult(values, result.labels, result.metrics)

    return reward


@contextlib.contextmanager
def entropy_reward_replaced(kind: str | None, seed: int):
    """``METHODS["entropy"]`` with :func:`transformed_reward` for the duration (nothing when None)."""
    if kind is None:
        yield
        return
    saved = methods.METHODS["entropy"]
    methods.METHODS["entropy"] = dataclasses.replace(saved, reward=transformed_reward(kind, seed))
    try:
        yield
    finally:
        methods.METHODS["entropy"] = saved


def run_variant(out: Path, name: str, kind: str | None, overrides: dict, steps: int, seed: int) -> Path:
    from corewarding.training.run import train
    from corewarding.training.settings import load_recipe

    folder = out / name
    done = folder / "metrics.jsonl"
    if done.is_file() and any(r.get("step") == steps and "entropy" in r for r in read_metrics(done)):
        return folder
    config = load_recipe(
        "tiny/entropy", output_dir=str(folder), overwrite_output_dir=True, max_steps=steps, seed=seed,
        eval_steps=20, max_heldout_problems=64, save_steps=steps, **overrides,
    )
    with entropy_reward_replaced(kind, seed):
        train(config)
    return folder


def _window_mean(rows: list[dict], key: str, first: bool, window: int = 10) -> float | None:
    values = [r[key] for r in rows if key in r]
    values = values[:window] if first else values[-window:]
    return statistics.fmean(values) if values else None


def summarize_variant(folder: Path) -> dict:
    rows = read_metrics(folder / "metrics.jsonl")
    heldout = [r[HELDOUT_SAMPLED] for r in rows if HELDOUT_SAMPLED in r]
    return {
        "entropy_start": _window_mean(rows, "entropy", True),
        "entropy_end": _window_mean(rows, "entropy", False),
        "heldout_start": heldout[0] if heldout else None,
        "heldout_end": heldout[-1] if heldout else None,
        "length_end": _window_mean(rows, MEAN_LENGTH, False),
        "entropy_series": [(r["step"], r["entropy"]) for r in rows if "entropy" in r],
    }


def runs(out: Path, seed: int, only: list[str] | None, steps_override: int | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    summaries = {}
    for name, what, kind, overrides, steps in VARIANTS:
        if only and name not in only:
            continue
        steps = steps_override or steps
        summaries[name] = {"what": what, "steps": steps, **summarize_variant(
            run_variant(out, name, kind, overrides, steps, seed))}
    (out / "summary.json").write_text(json.dumps(summaries, indent=1))
    print("| variant | what changes | steps | token entropy, first 10 → last 10 steps | change "
          "| held-out avg@4 %, start → end | mean length, last 10 |")
    print("|---|---|---|---|---|---|---|")
    for name, s in summaries.items():
        print(f"| {name} | {s['what']} | {s['steps']} | {s['entropy_start']:.3f} → {s['entropy_end']:.3f} "
              f"| {s['entropy_end'] - s['entropy_start']:+.3f} | {100 * s['heldout_start']:.1f} → "
              f"{100 * s['heldout_end']:.1f} | {s['length_end']:.1f} |")
    draw(summaries, out / "entropy_controls.png")


def draw(summaries: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, s in summaries.items():
        steps, values = zip(*s["entropy_series"])
        smooth = [statistics.fmean(values[max(0, i - 9): i + 1]) for i in range(len(values))]
        ax.plot(steps, smooth, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("policy token entropy, nats (10-step mean)")
    ax.set_title("Entropy minimisation and its controls (tiny model, distractor regime, seed 0)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"figure: {path}")


@torch.no_grad()
def _sample_groups(model, tokenizer, questions: list[str], group: int, max_new_tokens: int):
    """G rollouts per question at T = 1 (the recipe's): (prompt ids, completion ids) per rollout."""
    pairs = []
    for question in questions:
        prompt = tokenizer.apply_chat_template(chat_messages(question), add_generation_prompt=True,
                                               return_tensors="pt", return_dict=True)
        output = model.generate(**prompt, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                                max_new_tokens=max_new_tokens, num_return_sequences=group,
                                pad_token_id=tokenizer.pad_token_id)
        p_len = prompt["input_ids"].shape[1]
        for row in output:
            completion = row[p_len:]
            keep = completion != tokenizer.pad_token_id
            if tokenizer.eos_token_id is not None and (completion == tokenizer.eos_token_id).any():
                end = int((completion == tokenizer.eos_token_id).nonzero()[0]) + 1
                keep = torch.arange(len(completion)) < end
            pairs.append((prompt["input_ids"][0], completion[keep]))
    return pairs


def _token_entropies_and_logp(model, prompt_ids, completion_ids):
    ids = torch.cat([prompt_ids, completion_ids]).unsqueeze(0)
    logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1: -1].float()
    log_p = torch.log_softmax(logits, dim=-1)
    entropies = -(log_p.exp() * log_p).sum(-1)
    return entropies, log_p.gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1)


def anatomy(model_name: str, questions: int, group: int, seed: int) -> None:
    torch.manual_seed(seed)
    model, tokenizer = load_model(model_name, device="cpu", dtype=torch.float32)
    problems = synthetic_problems(model_name, questions, "train", seed=seed)
    pairs = _sample_groups(model, tokenizer, [p.question for p in problems], group, 48)
    params = [p for p in model.parameters() if p.requires_grad]
    spreads, ranges, peak_shares, ratios, means = [], [], [], [], []
    negative_share, advantage_ratios, unit_ratios = [], [], []
    for start in range(0, len(pairs), group):
        mean_h, grads, peak = [], [], []
        for prompt_ids, completion_ids in pairs[start: start + group]:
            if len(completion_ids) == 0:
                continue
            with torch.no_grad():
                h, _ = _token_entropies_and_logp(model, prompt_ids, completion_ids)
            mean_h.append(h.mean().item())
            peak.append((h.max() / h.sum().clamp(min=1e-12)).item())
        if len(mean_h) < 2 or statistics.pstdev(mean_h) == 0:
            continue
        rewards = [-h for h in mean_h]
        mu, sd = statistics.fmean(rewards), statistics.pstdev(rewards)
        advantages = [(r - mu) / (sd + 1e-4) for r in rewards]
        kept = [(p, c) for p, c in pairs[start: start + group] if len(c)]
        for (prompt_ids, completion_ids), a in zip(kept, advantages):
            model.zero_grad()
            _, logp = _token_entropies_and_logp(model, prompt_ids, completion_ids)
            (-a * logp.mean()).backward()
            grads.append(torch.sqrt(sum((p.grad ** 2).sum() for p in params if p.grad is not None)).item())
        down = [g for g, a in zip(grads, advantages) if a < 0]
        up = [g for g, a in zip(grads, advantages) if a > 0]
        if down and up:
            ratios.append(statistics.fmean(down) / statistics.fmean(up))
            size_down = statistics.fmean(-a for a in advantages if a < 0)
            size_up = statistics.fmean(a for a in advantages if a > 0)
            advantage_ratios.append(size_down / size_up)
            unit_ratios.append(ratios[-1] / advantage_ratios[-1])
        negative_share.append(sum(a < 0 for a in advantages) / len(advantages))
        spreads.append(statistics.pstdev(mean_h))
        ranges.append(max(mean_h) - min(mean_h))
        peak_shares.append(statistics.fmean(peak))
        means.append(statistics.fmean(mean_h))
    def spread(values: list[float]) -> str:
        values = sorted(values)
        return (f"{statistics.median(values):.2f}× ({values[len(values) // 10]:.2f}–"
                f"{values[(9 * len(values)) // 10]:.2f})")

    print(f"| measurement ({model_name}, {len(spreads)} groups of {group}, T = 1) | value |")
    print("|---|---|")
    print(f"| a rollout's mean token entropy, mean over rollouts | {statistics.fmean(means):.3f} nats |")
    print(f"| its standard deviation within a group, mean over groups | {statistics.fmean(spreads):.3f} nats |")
    print(f"| its range within a group (max − min), mean over groups | {statistics.fmean(ranges):.3f} nats |")
    print(f"| share of a rollout's summed entropy in its most uncertain token | {statistics.fmean(peak_shares):.0%} |")
    print(f"| share of a group's rollouts with a negative advantage | {statistics.fmean(negative_share):.0%} |")
    print("| per group, pushed-down (A < 0) over pushed-up (A > 0) rollouts, median (10th–90th percentile): | |")
    print(f"| – mean gradient norm of A_i · mean_t log p(y_t) | {spread(ratios)} |")
    print(f"| – mean advantage size abs(A_i) | {spread(advantage_ratios)} |")
    print(f"| – gradient norm per unit of advantage | {spread(unit_ratios)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="part", required=True)
    a = sub.add_parser("anatomy", help="what the entropy reward and its advantage look like (no training)")
    a.add_argument("--model", default="tiny")
    a.add_argument("--questions", type=int, default=64)
    a.add_argument("--group", type=int, default=8)
    a.add_argument("--seed", type=int, default=0)
    r = sub.add_parser("runs", help="the training controls (about 1,000 steps of the tiny model)")
    r.add_argument("-o", "--out", type=Path, default=Path("runs/entropy_controls"))
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--only", nargs="*", help="variant names (default: all)")
    r.add_argument("--steps", type=int, default=None, help="steps of every variant (default: each its own)")
    args = parser.parse_args()
    if args.part == "anatomy":
        anatomy(args.model, args.questions, args.group, args.seed)
    else:
        runs(args.out, args.seed, args.only, args.steps)


if __name__ == "__main__":
    main()
