"""Where settings come from and how they are shown: recipes (YAML files that build on one another), the
``--key value`` command line of ``corewarding train``, its help screen, and the table of
``docs/settings.md``. The two views are generated from the fields' metadata of
:class:`~corewarding.training.config.CoRewardingConfig`, the one place each setting is described.
"""

from __future__ import annotations

import argparse
import difflib
import inspect
from dataclasses import MISSING, fields
from pathlib import Path

import yaml

from corewarding.training.config import SETTING_GROUPS, CoRewardingConfig, SettingError, SettingHelp

__all__ = [
    "RECIPES_DIR", "recipe_path", "recipe_settings", "load_recipe", "config_from_args", "shown_settings",
    "settings_help", "settings_markdown",
]

#: The recipes shipped with the package (``configs/tiny`` in the repository points here).
RECIPES_DIR = Path(__file__).parent / "recipes"

_FIELDS = {f.name: f for f in fields(CoRewardingConfig)}


def _unknown_key_error(key: str, where: str) -> SettingError:
    close = difflib.get_close_matches(key, _FIELDS, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]}?)" if close else " (corewarding train --help lists the settings)"
    return SettingError(f"{where}: unknown setting {key}{hint}")

def recipe_path(name: str | Path) -> Path:
    """A recipe file: a path, or the name of a shipped recipe (``tiny/co_rewarding_ii``)."""
    path = Path(name)
    if path.is_file():
        return path
    shipped = RECIPES_DIR / f"{name}.yaml"
    if shipped.is_file():
        return shipped
    names = sorted(
        str(p.relative_to(RECIPES_DIR).with_suffix(""))
        for p in RECIPES_DIR.glob("*/*.yaml")
        if not p.name.startswith("_")
    )
    raise FileNotFoundError(f"no recipe at {name}: give a YAML file or one of {', '.join(names)}")


def recipe_settings(name: str | Path, _within: tuple[Path, ...] = ()) -> dict:
    """The settings of a recipe (:func:`recipe_path`), over those of the recipe its ``base`` key names.

    ``base`` is a file path relative to the recipe, or a shipped recipe's name (``tiny/_common``); bases
    may have bases; a key that is not a setting is refused with a close match. Shared settings live in one
    file (``tiny/_common.yaml``, ``paper/_reference.yaml``) and each method's recipe states only what
    differs, e.g.::

        base: _common.yaml
        method: co_rewarding_ii
        teacher_rate_start: 0.01
    """
    path = recipe_path(name).resolve()
    if path in _within:
        raise SettingError(f"recipe {_within[0]}: its bases form a cycle through {path}")
    try:
        settings = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise SettingError(f"recipe {path} cannot be read: {error}") from None
    if not isinstance(settings, dict):
        raise SettingError(f"recipe {path} must be a YAML mapping of settings")
    for key in settings:
        if key != "base" and key not in _FIELDS:
            raise _unknown_key_error(key, f"recipe {path}")
    base = settings.pop("base", None)
    if base is None:
        return settings
    if (path.parent / base).is_file():
        base_path = path.parent / base
    else:
        try:  # a shipped recipe's name: `base: tiny/_common`
            base_path = recipe_path(str(base).removesuffix(".yaml"))
        except FileNotFoundError:
            raise FileNotFoundError(
                f"recipe {path}: its base {base} is neither a file beside it nor a shipped recipe"
            ) from None
    return {**recipe_settings(base_path, (*_within, path)), **settings}


def load_recipe(name: str | Path, **overrides) -> CoRewardingConfig:
    """The config of a recipe (:func:`recipe_settings`), with ``overrides`` applied."""
    return CoRewardingConfig(**{**recipe_settings(name), **overrides})


def _argument_parser(defaults: dict) -> argparse.ArgumentParser:
    # Imported here, so that a Python without TRL gets the CLI's one-line message (cli/app.py).
    from trl import TrlParser

    parser = TrlParser([CoRewardingConfig], exit_on_error=False)
    parser.set_defaults(**defaults)
    return parser


def config_from_args(recipe: str | Path | None, args: list[str]) -> CoRewardingConfig:
    """The config of ``corewarding train``: a recipe's settings, then ``--key value`` (or ``--key=value``)
    overrides. An unknown key gets a close-match suggestion; a value of the wrong type or out of range is a
    one-line ValueError, raised before any model or data is loaded."""
    settings = recipe_settings(recipe) if recipe is not None else {}
    for token in args:
        if token.startswith("--"):
            key = token[2:].split("=", 1)[0]
            if key not in _FIELDS and not (key.startswith("no_") and key[3:] in _FIELDS):
                raise _unknown_key_error("--" + key, "command line")
        elif token.startswith("-") and not _is_number(token):
            raise SettingError(f"command line: settings are given as --key value, got {token}")
    parser = _argument_parser(settings)
    try:
        (config,) = parser.parse_args_into_dataclasses(args=args)
    except argparse.ArgumentError as error:
        raise SettingError(f"command line: {error}") from None
    return config


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def shown_settings() -> dict[str, list[str]]:
    """The settings of each group by its title (:data:`~corewarding.training.config.SETTING_GROUPS`), in
    the order the config declares them: every field whose help names a group."""
    declared = list(inspect.get_annotations(CoRewardingConfig))
    groups = {title: [] for title in SETTING_GROUPS.values()}
    for name in declared:
        help_text = _FIELDS[name].metadata.get("help")
        if isinstance(help_text, SettingHelp):
            groups[SETTING_GROUPS[help_text.group]].append(name)
    return groups


def _help_text(name: str) -> str:
    return " ".join(str(_FIELDS[name].metadata.get("help", "")).split())


def _default_text(name: str, settings: dict) -> str:
    f = _FIELDS[name]
    if name in settings:
        return str(settings[name])
    if f.default is None and getattr(f.metadata.get("help"), "auto", None) is not None:
        return f.metadata["help"].auto
    if f.default_factory is not MISSING:
        return str(f.default_factory())
    return str(f.default)


def settings_help(recipe: str | Path | None = None) -> str:
    """Every setting of ``corewarding train`` by group, with its value (the recipe's, when one is given,
    else the default) and the first sentence of its help."""
    settings = recipe_settings(recipe) if recipe is not None else {}
    lines = [
        "Settings (--key value; a recipe's YAML uses the same keys)"
        + (f", with the values of {recipe}:" if recipe is not None else ", with their defaults:"),
    ]
    for group, names in shown_settings().items():
        lines.append(f"\n{group}:")
        for name in names:
            first = _help_text(name).split(". ")[0].rstrip(".")
            value = _default_text(name, settings)
            shown = value if len(value) <= 18 else value[:17] + "…"
            lines.append(f"  --{name:<30} {shown:<18}  {first[:70]}")
    lines.append(
        "\nAny other field of TRL's GRPOConfig or transformers' TrainingArguments is accepted under its own "
        "name (see their documentation)."
    )
    return "\n".join(lines)


def settings_markdown() -> str:
    """The text of ``docs/settings.md``: a table per group of every setting, its default and its help."""
    lines = [
        "# Settings of `corewarding train`",
        "",
        "Generated from the fields of `corewarding.training.config.CoRewardingConfig` by",
        "`corewarding.training.settings.settings_markdown()`; a test checks that this file equals it. A",
        "recipe's YAML uses the same keys, and `--key value` on the command line overrides them. Any other",
        "field of TRL's `GRPOConfig` and transformers' `TrainingArguments` is accepted under its own name.",
    ]
    for group, names in shown_settings().items():
        lines += ["", f"## {group}", "", "| setting | default | meaning |", "| --- | --- | --- |"]
        for name in names:
            value = _default_text(name, {})
            value = value if len(value) <= 40 else value[:39] + "…"
            cells = [f"`{name}`", f"`{value}`", _help_text(name)]
            lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"
