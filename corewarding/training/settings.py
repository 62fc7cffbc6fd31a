"""Where settings come from and how they are shown: recipes (YAML files that build on one another), the
``--key value`` command line of ``corewarding train``, its help screen, and the table of
``docs/settings.md``. The two views are generated from the fields' metadata of
:class:`~corewarding.training.config.CoRewardingConfig`, the one place each setting is described, through
the settings index (:mod:`~corewarding.training.settings_index`): neither they nor the checks of a
recipe's or command line's keys import TRL, so that help and mistakes answer at once.
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from corewarding.core.errors import SettingError, did_you_mean, unknown_choice
from corewarding.training.settings_index import check_max_steps, settings_index

if TYPE_CHECKING:
    from corewarding.training.config import CoRewardingConfig

__all__ = [
    "RECIPES_DIR", "recipe_path", "recipe_settings", "load_recipe", "config_from_args", "shown_settings",
    "settings_help", "settings_markdown",
]

#: The recipes shipped with the package (``configs/tiny`` in the repository points here).
RECIPES_DIR = Path(__file__).parent / "recipes"


def _unknown_key_error(key: str, where: str) -> SettingError:
    hint = did_you_mean(key, settings_index().names) or " (corewarding train --help lists the settings)"
    return SettingError(f"{where}: unknown setting {key}{hint}")


def _check_choices(settings: dict, origins: dict) -> None:
    """A setting that takes one of a few words (the method, answer matching, …) and is given another:
    ``unknown method 'majority_votes' (did you mean majority_vote?)``, after the recipe's file and line
    when ``origins`` (:func:`recipe_settings`) says it was written in one."""
    for name, choices in settings_index().choices.items():
        if name in settings and settings[name] not in choices:
            error = unknown_choice(name, settings[name], choices, SettingError)
            raise SettingError(f"recipe {origins[name]}: {error}") if name in origins else error


def _check_numbers(given: dict[str, str]) -> None:
    """A number setting given a command-line value that is not one: ``command line: --max_steps takes an
    integer, got 'ten'`` (before TRL is imported; its parser would say the same seconds later)."""
    for name, value in given.items():
        kind = settings_index().numbers.get(name)
        try:
            {"int": int, "float": float}.get(kind, str)(value)
        except ValueError:
            noun = "an integer" if kind == "int" else "a number"
            raise SettingError(f"command line: --{name} takes {noun}, got {value!r}") from None


def _yaml_error(path: Path, error: yaml.YAMLError) -> SettingError:
    """A recipe that is not valid YAML, with where: ``recipe r.yaml:3:9: mapping values are not allowed
    here``."""
    mark = getattr(error, "problem_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    return SettingError(f"recipe {where}: {problem}")


def _key_lines(text: str) -> dict:
    """The line of each top-level key of a YAML mapping (for errors that name a key)."""
    node = yaml.compose(text)
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {key.value: key.start_mark.line + 1 for key, _ in node.value}


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
    raise FileNotFoundError(
        f"no recipe at {name}{did_you_mean(str(name), names)}: give a YAML file or one of {', '.join(names)}"
    )


def recipe_settings(name: str | Path, _within: tuple[Path, ...] = (), origins: dict | None = None) -> dict:
    """The settings of a recipe (:func:`recipe_path`), over those of the recipe its ``base`` key names;
    ``origins``, when given, receives where each setting was written (``path:line``), for errors.

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
        text = path.read_text()
        settings = yaml.safe_load(text) or {}
    except OSError as error:
        raise SettingError(f"recipe {path} cannot be read: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise _yaml_error(path, error) from None
    if not isinstance(settings, dict):
        raise SettingError(f"recipe {path} must be a YAML mapping of settings")
    lines = _key_lines(text)
    for key in settings:
        if key != "base" and key not in settings_index().names:
            raise _unknown_key_error(key, f"recipe {path}:{lines.get(key, 1)}")
    base = settings.pop("base", None)
    own = {key: f"{path}:{lines.get(key, 1)}" for key in settings}
    if base is None:
        if origins is not None:
            origins.update(own)
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
    merged = {**recipe_settings(base_path, (*_within, path), origins), **settings}
    if origins is not None:
        origins.update(own)
    return merged


def load_recipe(name: str | Path, **overrides) -> CoRewardingConfig:
    """The config of a recipe (:func:`recipe_settings`), with ``overrides`` applied."""
    from corewarding.training.config import CoRewardingConfig

    return CoRewardingConfig(**{**recipe_settings(name), **overrides})


def _argument_parser(defaults: dict) -> argparse.ArgumentParser:
    # Imported here, so that a Python without TRL gets the CLI's one-line message (cli/app.py).
    from trl import TrlParser

    from corewarding.training.config import CoRewardingConfig

    parser = TrlParser([CoRewardingConfig], exit_on_error=False)
    parser.set_defaults(**defaults)
    return parser


#: Other names of settings on the command line, as every other command spells them: ``--columns`` (the
#: column mapping), ``--output``, ``--overwrite`` (``demo``'s).
_ALIASES = {"columns": "dataset_columns", "output": "output_dir", "overwrite": "overwrite_output_dir"}
#: The short options of the other commands that name a setting: ``-o`` is every command's output.
_SHORT_OPTIONS = {"-o": "--output_dir"}


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _command_line_settings(args: list[str]) -> tuple[list[str], dict[str, str]]:
    """The command line as argparse reads it, and its settings by name (underscores; the last given
    wins). ``--key value`` and ``--key=value``, ``--key-name`` and ``--key_name`` are the same setting; a
    value may be a negative number (``--learning_rate -1e-5``, which argparse alone takes for an option), and
    a list setting takes every value that follows (``--lora_target_modules q_proj v_proj``)."""
    parsed, values = [], {}
    index = 0
    while index < len(args):
        token = _SHORT_OPTIONS.get(args[index], args[index])
        if not token.startswith("--"):
            if token.startswith("-") and not _is_number(token):
                raise SettingError(f"command line: settings are given as --key value, got {token}")
            parsed.append(token)
            index += 1
            continue
        key, equals, value = token[2:].partition("=")
        key = key.replace("-", "_")
        key = _ALIASES.get(key, key)
        names = settings_index().names
        if key not in names and not (key.startswith("no_") and key[3:] in names):
            raise _unknown_key_error("--" + key, "command line")
        given = [value] if equals else []
        while index + 1 < len(args) and (not args[index + 1].startswith("-") or _is_number(args[index + 1])):
            given.append(args[index + 1])
            index += 1
        if len(given) > 1:
            parsed += [f"--{key}", *given]
        else:
            parsed.append(f"--{key}={given[0]}" if given else f"--{key}")
        if given:
            values[key] = " ".join(given)
        index += 1
    return parsed, values


def config_from_args(recipe: str | Path | None, args: list[str]) -> CoRewardingConfig:
    """The config of ``corewarding train``: a recipe's settings, then ``--key value`` (or ``--key=value``)
    overrides. An unknown key or a word setting's unknown value gets a close-match suggestion, and a number
    setting's value that is not a number a one-line SettingError, before TRL is imported; a value out of
    range is a one-line SettingError, raised before any model or data is loaded."""
    origins: dict[str, str] = {}
    settings = recipe_settings(recipe, origins=origins) if recipe is not None else {}
    parsed, given = _command_line_settings(args)
    _check_choices({**settings, **given}, {k: v for k, v in origins.items() if k not in given})
    _check_numbers(given)
    if "max_steps" in given:  # the range too, before seconds of imports
        check_max_steps(int(given["max_steps"]))
    _check_dataset_files({**settings, **given})
    parser = _argument_parser(settings)
    try:
        (config,) = parser.parse_args_into_dataclasses(args=parsed)
    except argparse.ArgumentError as error:
        raise SettingError(f"command line: {error}") from None
    return config


#: The settings naming a dataset file; the generated tasks' names are not files.
DATASET_SETTINGS = ("dataset", "dataset_rephrasings", "heldout_dataset")
GENERATED_TASKS = ("synthetic", "arithmetic", "auto", "split", "none", "null", "")


def _check_dataset_files(settings: dict) -> None:
    """A dataset file that does not exist: a one-line SettingError now, not after seconds of imports."""
    from corewarding.data.rows import missing_dataset_file

    for name in DATASET_SETTINGS:
        value = settings.get(name)
        if value is None or str(value).lower() in GENERATED_TASKS:
            continue
        missing = missing_dataset_file(str(value))
        if missing:
            raise SettingError(f"{name}: {missing}")


def shown_settings() -> dict[str, list[str]]:
    """The settings of each group by its title (:data:`~corewarding.training.config.SETTING_GROUPS`), in
    the order the config declares them: every field whose help names a group."""
    return settings_index().shown()


def settings_help(recipe: str | Path | None = None, width: int | None = None) -> str:
    """Every setting of ``corewarding train`` by group, with its value (the recipe's, when one is given,
    else the default) and the first sentence of its help: wrapped at ``width`` (a terminal's), in full
    on one line when ``width`` is None (output piped to a file)."""
    settings = recipe_settings(recipe) if recipe is not None else {}
    lines = [
        "Settings (--key value or --key-name value; a recipe's YAML uses the same keys)"
        + (f", with the values of {recipe}:" if recipe is not None else ", with their defaults:"),
    ]
    index = settings_index()
    for group, names in index.shown().items():
        lines.append(f"\n{group}:")
        for name in names:
            setting = index.setting(name)
            first = setting["help"].split(". ")[0].rstrip(".")
            value = str(settings[name]) if name in settings else setting["default"]
            # Piped (no width), every value in full, on its one line.
            shown = value.replace("\n", "\\n") if width is None or len(value) <= 18 else value[:17] + "…"
            head = f"  --{name:<30} {shown:<18}  "
            if width is None or width <= len(head) + 20:
                lines.append(head + first)
            else:
                lines += textwrap.wrap(
                    first, width, initial_indent=head, subsequent_indent=" " * len(head)
                ) or [head]
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
    for group, settings in settings_index().groups.items():
        lines += ["", f"## {group}", "", "| setting | default | meaning |", "| --- | --- | --- |"]
        for setting in settings:
            value = setting["default"]
            value = value if len(value) <= 40 else value[:39] + "…"
            cells = [f"`{setting['name']}`", f"`{value}`", setting["help"]]
            lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"
