"""Every option of every command says what it does, its default and its choices; the internal
command is not listed; a bool config field is a flag."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import pytest
from conftest import needs_torch

from runtime.options import add_fields, build, comments

pytestmark = pytest.mark.unit


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _check_every_option(parser: argparse.ArgumentParser, skip=("bench-row",)) -> list[str]:
    problems = []
    for name, sub in _subparsers(parser).items():
        if name in skip:
            continue
        for a in sub._actions:
            if isinstance(a, argparse._HelpAction):
                continue
            flag = a.option_strings[-1] if a.option_strings else a.dest
            text = a.help or ""
            if not text.strip():
                problems.append(f"{name} {flag}: no help")
                continue
            shown = a.default not in (None, False, True, "", ()) and not a.required
            if shown and "default" not in text:
                problems.append(f"{name} {flag}: default {a.default!r} not in its help")
            if a.choices and not all(str(c) in text for c in a.choices):
                problems.append(f"{name} {flag}: choices {list(a.choices)} not in its help")
    return problems


def test_every_runtime_option_has_help_with_default_and_choices():
    from runtime.__main__ import build_parser

    parser, _ = build_parser()
    assert _check_every_option(parser) == []


@needs_torch
def test_every_export_option_has_help_with_default_and_choices():
    from export.__main__ import build_parser

    assert _check_every_option(build_parser()) == []


def test_the_internal_command_is_not_listed(capsys):
    from runtime.__main__ import build_parser

    parser, _ = build_parser()
    text = parser.format_help()
    assert "bench-row" not in text and "{caption,describe,bench,doctor}" in text
    assert "bench-row" in _subparsers(parser)  # still there for the benchmark's children


@needs_torch
def test_train_help_explains_the_dataset_spec():
    from export.__main__ import build_parser

    text = _subparsers(build_parser())["train"].format_help()
    assert "[FORMAT:]PATH[@IMAGES][#SPLIT]" in text
    assert "coco, karpathy, flickr8k, jsonl" in text
    assert "flickr8k:Flickr8k.token.txt@Flicker8k_Dataset#train" in text
    # the field comments are the option help
    assert "share of samples trained on int8-backbone features" in " ".join(text.split())


@dataclass(frozen=True)
class Demo:
    loud: bool = False  # speak up
    play: bool = True  # play it; --quiet turns it off
    rate: int = 175  # words per minute, on
    # two lines
    name: str | None = None  # who


def test_field_comments_are_the_help_continuation_lines_included():
    assert comments(Demo) == {
        "loud": "speak up",
        "play": "play it; --quiet turns it off",
        "rate": "words per minute, on two lines",
        "name": "who",
    }


def test_a_bool_field_is_a_flag_not_a_string():
    p = argparse.ArgumentParser()
    add_fields(p, Demo, "loud", "play", "rate", invert=("play",), flags={"play": "--quiet"})
    assert build(Demo, p.parse_args([])) == Demo()
    assert build(Demo, p.parse_args(["--loud", "--quiet"])) == Demo(loud=True, play=False)
    with pytest.raises(SystemExit):  # "--loud false" is not how a flag is given
        p.parse_args(["--loud", "false"])
    assert p.parse_args(["--rate", "200"]).rate == 200


def test_bench_torch_is_a_flag():
    from runtime.__main__ import build_parser

    parser, commands = build_parser()
    assert parser.parse_args(["bench", "--torch"]).torch is True
    assert parser.parse_args(["bench"]).torch is False
