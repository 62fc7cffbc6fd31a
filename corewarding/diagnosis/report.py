"""The terminal tables of a diagnosis record (:func:`corewarding.diagnosis.diagnose.diagnose`)."""

from __future__ import annotations

from rich import box
from rich.table import Table

__all__ = ["measurements_table", "verdict_table"]


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _rows(record: dict) -> list[tuple[str, str, str]]:
    """(figure, value, what it tells) rows of every measurement the record holds."""
    m = record["measurements"]
    free, labelled, probe = m["label_free"], m["labelled"], m["probe"]
    k, entropy = record["k"], free["answer_entropy_bits"]
    rows = [
        ("majority share, mean %", _pct(free["majority_share"]["mean"]), f"votes of the majority of {k}"),
        ("no-answer rate %", _pct(free["no_answer_rate"]), "samples without an extractable answer"),
        ("answer entropy, bits", "–" if entropy is None else f"{entropy:.2f}", "spread of the answers"),
        ("teacher agreement %", _pct(free["teacher_agreement"]), "fresh samples' majority = own majority"),
        ("cross-view agreement %", _pct(free["cross_view_agreement"]), "the two wordings' majorities agree"),
    ]
    if labelled is not None:
        for view in ("question", "rephrasing"):
            scores = labelled[view]
            if scores is None:
                continue
            rows.append((
                f"{view}: greedy / avg@{k} / maj@{k} / pass@{k} %",
                " / ".join(_pct(scores[name]) for name in ("greedy_accuracy", "avg_at_k", "maj_at_k"))
                + f" / {_pct(scores['pass_at_k'][k])}",
                f"headroom maj@{k} − avg@{k}: {100 * scores['headroom']:+.1f} points",
            ))
        accuracy = labelled["label_accuracy"]
        rows.append((
            "label accuracy today: majority vote / Co-rewarding-I / -II %",
            " / ".join(_pct(accuracy[m]) for m in ("majority_vote", "co_rewarding_i", "co_rewarding_ii")),
            "share of rollouts whose label is right",
        ))
        cross = labelled["cross_view"]
        if cross is not None:
            gain = cross["other_right_own_wrong"]
            rows.append((
                "other view right, own wrong: question / rephrasing %",
                f"{_pct(gain['question'])} / {_pct(gain['rephrasing'])}",
                f"cross-view label gain; both wrong {_pct(cross['both_wrong'])}%",
            ))
    if probe is not None:
        collapse = probe["collapse"]
        trends = probe["first_last"]
        ratio = trends.get("majority_ratio")
        rows.append((
            f"probe: {probe['steps']} majority-vote steps",
            f"flagged at step {collapse['step']}" if collapse["collapsed"] else "not flagged",
            "majority ratio " + (f"{ratio[0]:.2f} → {ratio[1]:.2f}" if ratio else "–")
            + _heldout(trends.get("eval_sampled_accuracy")),
        ))
    return rows


def _heldout(pair) -> str:
    return f", held-out sampled {_pct(pair[0])} → {_pct(pair[1])}%" if pair else ""


def measurements_table(record: dict) -> Table:
    """Every measured figure, one row each, with what it tells."""
    table = Table(
        title=f"{record['model']} on {record['dataset']}: {record['num_questions']} questions, "
        f"k = {record['k']} at T = {record['temperature']:g}",
        box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True,
    )
    for header, justify in (("figure", "left"), ("value", "right"), ("", "left")):
        table.add_column(header, justify=justify, overflow="fold")
    for row in _rows(record):
        table.add_row(*row)
    return table


def verdict_table(record: dict) -> Table:
    """The label-free methods, best first: expected outcome and why."""
    table = Table(title=f"Verdict ({record['basis']} basis)", box=box.SIMPLE_HEAD, pad_edge=False,
                  collapse_padding=True)
    for header in ("method", "expected", "why"):
        table.add_column(header, overflow="fold")
    for method in record["ranking"]:
        verdict = record["verdicts"][method]
        style = {"helps": "green", "collapses": "red"}.get(verdict["expected"], "")
        expected = f"[{style}]{verdict['expected']}[/{style}]" if style else verdict["expected"]
        table.add_row(method, expected, verdict["reason"])
    return table
