"""A synthetic task: multi-step arithmetic word problems, each told in several surface forms.

The *abstract problem* is a :class:`Chain`: a start value and a few operations applied left to
right, e.g. ``7+5*2`` means (7 + 5) * 2 = 24. Every chain can be told in :data:`NUM_FORMS` surface
forms — a story about a person, a container, a list of instructions, and a question asked first
with its facts after it — with randomly chosen names, objects and verbs. All forms share one short
worked solution, so a question and its rephrasing (Co-rewarding-I's two views) exist natively::

    >>> chain = Chain.from_key("7+5*2")
    >>> chain.answer, worked_solution(chain)
    (24, '7+5=12. 12*2=24. \\\\boxed{24}')
    >>> for form in render_forms(chain, style_seed=3):
    ...     print(form.text)
    Mia has 7 cards. She buys 5 more. She ends up with 2 times as many. How many cards does Mia have now?
    A jar holds 7 stamps. 5 more are put in. The count is multiplied by 2. How many stamps does the jar hold now?
    Start with 7. Increase it by 5. Multiply by 2. What is the result?
    How many cards does Tom have if he starts with 7, buys 5 more, then gets 2 times as many?

Splits are disjoint by construction: :func:`split_of` assigns a chain to ``"test"`` when a hash of
its key (start value, operations and operands — not its wording) falls below
``TaskConfig.test_fraction``, else to ``"train"``. The assignment depends on nothing but the chain,
so no seed, count or surface form can put one abstract problem in both splits.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass

from corewarding.core.errors import UserError
from corewarding.data.records import Problem

__all__ = [
    "TaskConfig",
    "Chain",
    "NUM_FORMS",
    "FORM_NAMES",
    "SPLITS",
    "SurfaceForm",
    "split_of",
    "worked_solution",
    "render_forms",
    "surface_forms",
    "sample_chain",
    "sample_chains",
    "generate_problems",
    "chain_of",
]

OPERATIONS = ("+", "-", "*")
SPLITS = ("train", "test")
SOURCE = "synthetic-arithmetic"
# Draws after which sampling gives up on a config that cannot produce what is asked.
_MAX_DRAWS = 10_000


@dataclass(frozen=True)
class TaskConfig:
    """How hard the synthetic problems are, and how they are split.

    The defaults keep every number below 100 and the worked solution short (about 18 tokens of the
    tiny model's tokenizer), so a model of a million parameters learns the task partly within
    minutes on a CPU.

    Attributes:
        steps: operations per problem (default 2: a two-step problem, ``7+5*2``).
        operations: the operations drawn from, among ``+``, ``-``, ``*`` (default all three).
        start_range: inclusive range of the start value (default 1..20).
        operand_range: inclusive range of the operand of ``+`` and ``-`` (default 1..9: one digit).
        multiplier_range: inclusive range of the operand of ``*`` (default 2..5).
        max_value: largest value any intermediate result may take (default 99: two digits).
            Subtraction never goes below 1.
        test_fraction: share of all abstract problems that belong to the test split (default 0.2).
        distractor_rate: chance that a surface form carries one irrelevant sentence with a number in
            it ("Her friend Ava has 4 shells."), drawn for each form independently (default 0.0: none).
            The irrelevant-context distraction of GSM-IC (Shi et al., 2023); which forms of a problem
            carry one depends on the chain and the style seed only.
        distractor_range: inclusive range of the irrelevant number (default 1..9, the operands' range:
            GSM-IC's "number in range").
    """

    steps: int = 2
    operations: tuple[str, ...] = OPERATIONS
    start_range: tuple[int, int] = (1, 20)
    operand_range: tuple[int, int] = (1, 9)
    multiplier_range: tuple[int, int] = (2, 5)
    max_value: int = 99
    test_fraction: float = 0.2
    distractor_rate: float = 0.0
    distractor_range: tuple[int, int] = (1, 9)

    def __post_init__(self):
        if self.steps < 1:
            raise UserError(f"steps must be at least 1, got {self.steps}")
        if not self.operations or any(op not in OPERATIONS for op in self.operations):
            raise UserError(f"operations must be a non-empty subset of {OPERATIONS}, got {self.operations}")
        for name, low in (
            ("start_range", 1), ("operand_range", 1), ("multiplier_range", 2), ("distractor_range", 1)
        ):
            lo, hi = getattr(self, name)
            if not low <= lo <= hi:
                raise UserError(f"{name} must be (lo, hi) with {low} <= lo <= hi, got {(lo, hi)}")
        if self.max_value < self.start_range[1]:
            raise UserError(f"max_value ({self.max_value}) is below the largest start value")
        if not 0.0 < self.test_fraction < 1.0:
            raise UserError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        if not 0.0 <= self.distractor_rate <= 1.0:
            raise UserError(f"distractor_rate must be in [0, 1], got {self.distractor_rate}")


@dataclass(frozen=True)
class Chain:
    """An abstract problem: ``start``, then each ``(operation, operand)`` of ``steps`` in order."""

    start: int
    steps: tuple[tuple[str, int], ...]

    @property
    def key(self) -> str:
        """The chain as text, read left to right: ``"7+5*2"``."""
        return str(self.start) + "".join(f"{op}{operand}" for op, operand in self.steps)

    @classmethod
    def from_key(cls, key: str) -> Chain:
        if not re.fullmatch(r"\d+(?:[-+*]\d+)+", key):
            raise ValueError(f"not a chain key: {key!r} (expected e.g. '7+5*2')")
        start, *rest = re.findall(r"[-+*]?\d+", key)
        return cls(int(start), tuple((s[0], int(s[1:])) for s in rest))

    def values(self) -> list[int]:
        """The running value after each step (the last is the answer)."""
        values, value = [], self.start
        for op, operand in self.steps:
            value = _apply(op, value, operand)
            values.append(value)
        return values

    @property
    def answer(self) -> int:
        return self.values()[-1]


def _apply(op: str, value: int, operand: int) -> int:
    if op == "+":
        return value + operand
    if op == "-":
        return value - operand
    return value * operand


def split_of(chain: Chain, test_fraction: float = TaskConfig.test_fraction) -> str:
    """``"test"`` or ``"train"``, by a hash of the chain's key: a chain always lands in the same split."""
    digest = hashlib.sha256(chain.key.encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") < test_fraction * 2**64 else "train"


def worked_solution(
    chain: Chain, stop_early: bool = False, slip: tuple[int, int] | None = None, distractor: int | None = None
) -> str:
    r"""One equation per step, then the boxed answer: ``"7+5=12. 12*2=24. \boxed{24}"``.

    The right solution, or one of the mistakes the tiny model's pretraining corpus teaches
    (:mod:`corewarding.tiny.pretraining`); each gives a wrong answer:

    * ``stop_early`` leaves out the last step and boxes the value before it: ``"7+5=12. \boxed{12}"``.
    * ``distractor`` = k adds the irrelevant number as a last step, as a model distracted by an
      irrelevant fact does: ``"7+5=12. 12*2=24. 24+4=28. \boxed{28}"``.
    * ``slip`` = (i, d) writes the result of step i off by d, and the later steps compute from the
      slipped value (an arithmetic slip): ``(0, -1)`` gives ``"7+5=11. 11*2=22. \boxed{22}"``.

    >>> worked_solution(Chain.from_key("7+5*2"), slip=(1, 2), distractor=4)
    '7+5=12. 12*2=26. 26+4=30. \\boxed{30}'
    """
    steps = list(chain.steps[:-1] if stop_early else chain.steps)
    if distractor is not None:
        steps.append(("+", distractor))
    if slip is not None and not 0 <= slip[0] < len(steps):
        raise ValueError(f"slip step {slip[0]} is not one of the {len(steps)} steps written")
    equations, value = [], chain.start
    for i, (op, operand) in enumerate(steps):
        result = _apply(op, value, operand) + (slip[1] if slip is not None and slip[0] == i else 0)
        equations.append(f"{value}{op}{operand}={result}.")
        value = result
    return " ".join(equations) + f" \\boxed{{{value}}}"


# Surface forms. Each family tells a chain its own way: an opening that states the start value, one
# clause per step, and a question, laid out in the family's order. Clauses and questions are drawn per
# rendering from the family's synonyms, so two renderings differ in wording as well as in template.
_PEOPLE = (("Mia", "she"), ("Tom", "he"), ("Ava", "she"), ("Leo", "he"), ("Zoe", "she"), ("Sam", "he"))
_ITEMS = ("apples", "pens", "coins", "books", "cards", "shells", "stamps", "marbles")
_CONTAINERS = ("box", "jar", "bag", "basket", "crate")


@dataclass(frozen=True)
class _Family:
    opening: str
    clauses: dict[str, tuple[str, ...]]
    questions: tuple[str, ...]
    # Irrelevant sentences, each with a number ({k}) that plays no part in the problem.
    distractors: tuple[str, ...]
    joiner: str = " "
    layout: str = "{opening}{distractor} {steps} {question}"


_FAMILIES = (
    _Family(
        opening="{Name} has {n} {items}.",
        clauses={
            "+": ("{P} buys {n} more.", "{P} finds {n} more.", "{P} gets {n} more."),
            "-": ("{P} gives away {n}.", "{P} loses {n}.", "{P} sells {n}."),
            "*": ("{P} then has {n} times as many.", "{P} ends up with {n} times as many."),
        },
        questions=("How many {items} does {Name} have now?",),
        distractors=("{Other} has {k} {other_items}.", "{Other} owns {k} {other_items}."),
    ),
    _Family(
        opening="A {box} holds {n} {items}.",
        clauses={
            "+": ("{n} more are put in.", "{n} more are added."),
            "-": ("{n} are taken out.", "{n} are removed."),
            "*": ("The count becomes {n} times as large.", "The count is multiplied by {n}."),
        },
        questions=("How many {items} are in the {box}?", "How many {items} does the {box} hold now?"),
        distractors=(
            "A {other_box} nearby holds {k} {other_items}.",
            "Next to it is a {other_box} with {k} {other_items}.",
        ),
    ),
    _Family(
        opening="Start with {n}.",
        clauses={
            "+": ("Add {n}.", "Increase it by {n}."),
            "-": ("Subtract {n}.", "Decrease it by {n}."),
            "*": ("Multiply by {n}.", "Multiply it by {n}."),
        },
        questions=("What is the result?", "What number do you get?"),
        distractors=("This is exercise {k}.", "The page shows the number {k}."),
    ),
    _Family(  # the question first, its facts after it
        opening="if {p} starts with {n}",
        clauses={
            "+": ("buys {n} more", "finds {n} more"),
            "-": ("gives away {n}", "sells {n}"),
            "*": ("gets {n} times as many",),
        },
        questions=("How many {items} does {Name} have",),
        distractors=("{Other} has {k} {other_items}.", "{Other} owns {k} {other_items}."),
        joiner=", then ",
        layout="{question} {opening}, {steps}?{distractor}",
    ),
)
#: Surface forms per chain (one per template family).
NUM_FORMS = len(_FAMILIES)
#: The families' names, in order.
FORM_NAMES = ("story", "container", "instructions", "question-first")


@dataclass(frozen=True)
class SurfaceForm:
    """One telling of a chain: its text, its template family, and its irrelevant number (None: none)."""

    text: str
    family: int
    distractor: int | None = None


def render_forms(chain: Chain, style_seed: int = 0, config: TaskConfig = TaskConfig()) -> list[SurfaceForm]:
    """The :data:`NUM_FORMS` surface forms of a chain; ``style_seed`` picks names, objects and verbs.

    Deterministic: the same chain, seed and config give the same texts. Every form states the start
    value and each step's operation and operand in the order they are applied, so all share the
    chain's answer. With ``config.distractor_rate`` > 0 each form independently carries an irrelevant
    sentence with a number in it; those draws use a random stream of their own, so a form without one
    reads exactly as at rate 0.
    """
    rng = random.Random(f"{chain.key}:{style_seed}")
    distracting = random.Random(f"{chain.key}:{style_seed}:distractor")
    forms = []
    for index, family in enumerate(_FAMILIES):
        name, pronoun = rng.choice(_PEOPLE)
        fill = {
            "Name": name,
            "p": pronoun,
            "P": pronoun.capitalize(),
            "items": rng.choice(_ITEMS),
            "box": rng.choice(_CONTAINERS),
        }
        steps = [rng.choice(family.clauses[op]).format(n=operand, **fill) for op, operand in chain.steps]
        number, sentence = None, ""
        if config.distractor_rate and distracting.random() < config.distractor_rate:
            number = distracting.randint(*config.distractor_range)
            others = [person for person, _ in _PEOPLE if person != name]
            sentence = " " + distracting.choice(family.distractors).format(
                k=number, Other=distracting.choice(others), other_items=distracting.choice(_ITEMS),
                other_box=distracting.choice([box for box in _CONTAINERS if box != fill["box"]]),
            )
        text = family.layout.format(
            opening=family.opening.format(n=chain.start, **fill),
            distractor=sentence,
            steps=family.joiner.join(steps),
            question=rng.choice(family.questions).format(**fill),
        )
        forms.append(SurfaceForm(text, index, number))
    return forms


def surface_forms(problem: Problem, config: TaskConfig = TaskConfig()) -> list[str]:
    """The texts of every surface form of a synthetic problem (its question and rephrasing among them),
    under the task config it was generated with."""
    return [form.text for form in render_forms(chain_of(problem), problem.meta["style_seed"], config)]


def chain_of(problem: Problem) -> Chain:
    """The abstract problem behind a problem made by :func:`generate_problems`."""
    if problem.source != SOURCE or "chain" not in problem.meta:
        raise ValueError(f"problem {problem.id!r} is not a synthetic arithmetic problem")
    return Chain.from_key(problem.meta["chain"])


def sample_chain(rng: random.Random, config: TaskConfig = TaskConfig()) -> Chain:
    """A random chain within the config's ranges (either split: see :func:`sample_chains`).

    Each step picks an operation uniformly among those that can keep the value within
    [1, max_value] with some operand in range, then an operand uniformly among those that can.
    A draw that gets stuck (no operation fits) is redrawn.

    Raises:
        ValueError: when no chain of ``config.steps`` steps fits the config.
    """
    for _ in range(_MAX_DRAWS):
        value = rng.randint(*config.start_range)
        start, steps = value, []
        for _ in range(config.steps):
            choices = {op: _allowed_operands(op, value, config) for op in config.operations}
            choices = {op: operands for op, operands in choices.items() if operands}
            if not choices:
                break
            op = rng.choice(sorted(choices))
            operand = rng.choice(choices[op])
            value = _apply(op, value, operand)
            steps.append((op, operand))
        else:
            return Chain(start, tuple(steps))
    raise UserError(f"no chain of {config.steps} steps fits this TaskConfig: {config}")


def _allowed_operands(op: str, value: int, config: TaskConfig) -> list[int]:
    lo, hi = config.multiplier_range if op == "*" else config.operand_range
    return [n for n in range(lo, hi + 1) if 1 <= _apply(op, value, n) <= config.max_value]


def sample_chains(rng: random.Random, split: str, config: TaskConfig = TaskConfig()) -> Iterator[Chain]:
    """An endless stream of random chains of one split (repeats allowed).

    Raises (when iterated):
        ValueError: for an unknown split, or when the split looks empty under the config (every one
            of many draws in a row falls in the other split).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    misses = 0
    while misses < _MAX_DRAWS:
        chain = sample_chain(rng, config)
        if split_of(chain, config.test_fraction) == split:
            misses = 0
            yield chain
        else:
            misses += 1
    raise UserError(f"the {split} split of this TaskConfig looks empty: widen its ranges")


def generate_problems(
    count: int, split: str = "train", seed: int = 0, config: TaskConfig = TaskConfig()
) -> list[Problem]:
    """``count`` distinct abstract problems of a split as :class:`Problem` records; deterministic for a seed.

    Each problem's question is one of its surface forms and its rephrasing another (different family),
    both chosen at random; ``meta`` holds the chain key, the style seed of :func:`render_forms`, the
    worked solution, the split, the two forms' families (``forms``) and irrelevant numbers
    (``distractors``, None where a form has none). The id is derived from the chain, so it is the same
    in every seed.

    Raises:
        ValueError: when the split cannot supply ``count`` distinct problems under this config.
    """
    if count < 0:
        raise UserError(f"count must be non-negative, got {count}")
    rng = random.Random(f"{SOURCE}:{split}:{seed}")
    chains = sample_chains(rng, split, config)
    seen: set[Chain] = set()
    problems = []
    # Draws of repeats are bounded so an impossible request fails instead of looping.
    for _ in range(50 * count + 1000):
        if len(problems) == count:
            break
        chain = next(chains)
        if chain in seen:
            continue
        seen.add(chain)
        style_seed = rng.getrandbits(32)
        question_form, rephrasing_form = rng.sample(range(NUM_FORMS), 2)
        forms = render_forms(chain, style_seed, config)
        problems.append(
            Problem(
                id="arith-" + hashlib.sha256(chain.key.encode()).hexdigest()[:12],
                question=forms[question_form].text,
                answer=str(chain.answer),
                rephrasing=forms[rephrasing_form].text,
                rephrasing_valid=True,
                source=SOURCE,
                meta={
                    "chain": chain.key,
                    "style_seed": style_seed,
                    "solution": worked_solution(chain),
                    "split": split,
                    "forms": [question_form, rephrasing_form],
                    "distractors": [forms[question_form].distractor, forms[rephrasing_form].distractor],
                },
            )
        )
    if len(problems) < count:
        raise UserError(
            f"the {split} split holds fewer than {count} distinct problems under this TaskConfig "
            f"(found {len(problems)}); ask for fewer or widen its ranges"
        )
    return problems
