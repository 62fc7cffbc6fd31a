"""The index of the settings of ``corewarding train``, read without TRL: every setting's name, and for
those shown by group, the default in words and the help.

:class:`~corewarding.training.config.CoRewardingConfig` is the one place each setting is described, but
importing it imports TRL, transformers and torch: seconds. The index (``settings_index.json`` beside
this module) is generated from its fields, so that the help screen and the check of every key of a
recipe or command line answer at once; a test checks that the shipped index is the config's. After a
change of the settings, write it again::

    python -m corewarding.training.settings_index
"""

from __future__ import annotations

import functools
import inspect
import json
import typing
from dataclasses import MISSING, dataclass, fields
from pathlib import Path

__all__ = ["INDEX_PATH", "SettingsIndex", "build_index", "check_max_steps", "settings_index", "write_index"]

#: The shipped index.
INDEX_PATH = Path(__file__).with_name("settings_index.json")


def check_max_steps(max_steps: int) -> None:
    """``max_steps``: a positive number of steps, or -1 (TRL: train ``num_train_epochs`` epochs). Here,
    beside the index, so that the command line checks it before TRL is imported, as the config does."""
    from corewarding.core.errors import SettingError

    if max_steps == 0 or max_steps < -1:
        raise SettingError(
            "max_steps must be a positive number of steps, or -1 to train num_train_epochs epochs; "
            f"got {max_steps}"
        )


@dataclass(frozen=True)
class SettingsIndex:
    """``names``: every setting (GRPOConfig's and TrainingArguments' included); ``groups``: the shown
    settings by group title, in the config's order, each as ``{"name", "default", "help"}`` with its
    default in words; ``choices``: the settings whose value is one of a few words, and those words;
    ``numbers``: the settings whose type is a number (or None), ``"int"`` or ``"float"``."""

    names: frozenset[str]
    groups: dict[str, list[dict[str, str]]]
    choices: dict[str, list[str]]
    numbers: dict[str, str]

    def shown(self) -> dict[str, list[str]]:
        """The names of the shown settings by group title."""
        return {title: [s["name"] for s in settings] for title, settings in self.groups.items()}

    def setting(self, name: str) -> dict[str, str]:
        """The shown setting ``name``: its name, default in words and help."""
        return next(s for settings in self.groups.values() for s in settings if s["name"] == name)

    def to_json(self) -> str:
        """The text of ``settings_index.json``."""
        record = {
            "names": sorted(self.names), "groups": self.groups, "choices": self.choices, "numbers": self.numbers,
        }
        return json.dumps(record, indent=1, ensure_ascii=False) + "\n"


def _default_in_words(f) -> str:
    help_text = f.metadata.get("help")
    if f.default is None and getattr(help_text, "auto", None) is not None:
        return help_text.auto
    if f.default_factory is not MISSING:
        return str(f.default_factory())
    return str(f.default)


def _number_kind(hint) -> str | None:
    """``"int"`` or ``"float"`` for a type hint ``int``, ``float``, ``int | None`` or ``float | None``."""
    kinds = {arg for arg in typing.get_args(hint) if arg is not type(None)} or {hint}
    if len(kinds) == 1 and (kind := kinds.pop()) in (int, float):
        return kind.__name__
    return None


def build_index() -> SettingsIndex:
    """The index of :class:`~corewarding.training.config.CoRewardingConfig`'s fields (imports TRL)."""
    from corewarding.training.config import CHOICES, SETTING_GROUPS, CoRewardingConfig, SettingHelp

    by_name = {f.name: f for f in fields(CoRewardingConfig)}
    groups: dict[str, list[dict[str, str]]] = {title: [] for title in SETTING_GROUPS.values()}
    for name in inspect.get_annotations(CoRewardingConfig):
        help_text = by_name[name].metadata.get("help")
        if isinstance(help_text, SettingHelp):
            groups[SETTING_GROUPS[help_text.group]].append(
                {"name": name, "default": _default_in_words(by_name[name]), "help": " ".join(help_text.split())}
            )
    numbers = {name: kind for name, hint in typing.get_type_hints(CoRewardingConfig).items()
               if (kind := _number_kind(hint))}
    choices = {name: list(words) for name, words in CHOICES.items()}
    return SettingsIndex(frozenset(by_name), groups, choices, numbers)


@functools.cache
def settings_index() -> SettingsIndex:
    """The shipped index (no TRL import)."""
    data = json.loads(INDEX_PATH.read_text(encoding="utf-8"))
    return SettingsIndex(frozenset(data["names"]), data["groups"], data["choices"], data["numbers"])


def write_index() -> None:
    """Write :func:`build_index` into :data:`INDEX_PATH`."""
    INDEX_PATH.write_text(build_index().to_json(), encoding="utf-8")


if __name__ == "__main__":
    write_index()
    print(f"wrote {INDEX_PATH}")
