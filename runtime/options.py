"""Config dataclasses as command-line options, in one place.

Each field's comment in its class is its `--help` text; its default and its choices are added
to it. A config checks its own ranges in `__post_init__` by calling `check()`, and the CLI
names the flag of the field at fault in the one-line error:

    @dataclass(frozen=True)
    class SpeechConfig:
        rate: int = 175  # words per minute

        def __post_init__(self):
            check(self, "rate", 80 <= self.rate <= 450, "use 80..450 words per minute")

    add_fields(parser, SpeechConfig, "rate")      # --rate, help "words per minute (default: 175)"
    cfg = build(SpeechConfig, args)                # OptionError("rate 100000: use 80..450 ...")
    error.named(flag_of(parser, error.field))      # the CLI's line: "--rate 100000: use ..."
"""

from __future__ import annotations

import argparse
import inspect
import io
import textwrap
import tokenize
from collections.abc import Callable
from dataclasses import MISSING, fields
from typing import cast

from runtime.errors import InputError


class OptionError(InputError):
    """An option's value outside its range; `field` is the config field, `flag` its CLI name
    once the CLI has filled it in."""

    def __init__(self, field: str, value, expected: str, flag: str | None = None):
        self.field, self.value, self.expected, self.flag = field, value, expected, flag
        shown = ",".join(map(str, value)) if isinstance(value, (tuple, list)) else value
        super().__init__(f"{flag or field} {shown}: {expected}")

    def named(self, flag: str) -> OptionError:
        return OptionError(self.field, self.value, self.expected, flag)


def check(cfg, name: str, ok: bool, expected: str) -> None:
    """Raise OptionError for `cfg.name` unless ok."""
    if not ok:
        raise OptionError(name, getattr(cfg, name), expected)


def number(value, kind=(int, float)) -> bool:
    """A real int or float, not a bool."""
    return isinstance(value, kind) and not isinstance(value, bool)


_COMMENTS: dict[type, dict[str, str]] = {}


def comments(cls) -> dict[str, str]:
    """field name -> the comment on its line in the class source, with the comment-only lines
    that continue it."""
    if cls in _COMMENTS:
        return _COMMENTS[cls]
    src = textwrap.dedent(inspect.getsource(cls))
    code_rows: dict[int, list[tokenize.TokenInfo]] = {}
    notes: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type == tokenize.COMMENT:
            notes[tok.start[0]] = tok.string.lstrip("#").strip()
        elif tok.type not in (
            tokenize.NL,
            tokenize.NEWLINE,
            tokenize.INDENT,
            tokenize.DEDENT,
            tokenize.ENDMARKER,
        ):
            code_rows.setdefault(tok.start[0], []).append(tok)
    names = {f.name for f in fields(cls)}
    out: dict[str, str] = {}
    current: str | None = None
    leading: list[str] = []  # a comment block after a blank line
    for row in range(1, len(src.splitlines()) + 1):
        toks = code_rows.get(row)
        if toks:
            current = None
            if (
                len(toks) > 1
                and toks[0].string in names
                and toks[1].string == ":"
                and toks[0].start[1] == 4
            ):
                current = toks[0].string
                out[current] = notes.get(row) or " ".join(leading)
            leading = []
        elif row in notes:
            if current is not None:  # continues the field above
                out[current] = f"{out[current]} {notes[row]}".strip()
            else:  # a block above the next field, its help unless it has a comment of its own
                leading.append(notes[row])
        else:  # a blank line ends a field's comment
            current, leading = None, []
    _COMMENTS[cls] = out
    return out


def comma_list(value: str) -> tuple[str, ...]:
    """A tuple field's value on the command line: 'fp32,int8' -> ('fp32', 'int8')."""
    return tuple(v for v in value.split(",") if v)


def _kind(f):
    t = str(f.type).replace(" ", "")
    for name, kind in (("int", int), ("float", float), ("bool", bool)):
        if t in (name, f"{name}|None"):
            return kind
    return comma_list if t.startswith("tuple[") else str


def add_fields(
    p: argparse.ArgumentParser,
    cls,
    *names: str,
    flags: dict[str, str] | None = None,
    choices: dict[str, tuple] | None = None,
    invert: tuple[str, ...] = (),
    metavars: dict[str, str] | None = None,
    notes: dict[str, str] | None = None,
) -> None:
    """One option per named field (every field when none is named): `--field-name`, or the
    flag `flags` gives it; its help from the field's comment (and `notes`, what the class cannot
    know: the profiles on this machine), with the default and choices. A
    bool field is a flag: `--name` turns it on, or, for the fields in `invert`, the flag turns
    it off (`--no-speak` for `play`)."""
    helps, flags, choices = comments(cls), flags or {}, choices or {}
    by_name = {f.name: f for f in fields(cls)}
    for name in names or tuple(by_name):
        f = by_name[name]
        flag = flags.get(name, "--" + name.replace("_", "-"))
        text = " ".join(filter(None, (helps.get(name, ""), (notes or {}).get(name, ""))))
        text = text.replace("%", "%%")  # argparse formats help with %
        kind = _kind(f)
        if kind is bool:
            action = "store_false" if name in invert else "store_true"
            p.add_argument(flag, dest=name, action=action, default=f.default, help=text)
            continue
        kw = {
            "dest": name,
            "type": kind,
            "metavar": (metavars or {}).get(name, flag.lstrip("-").upper().replace("-", "_")),
        }
        if name in choices:
            kw["choices"], kw["metavar"] = choices[name], None
            text += f" (choices: {', '.join(map(str, choices[name]))})"
        if f.default is MISSING and f.default_factory is MISSING:
            kw["required"] = True
        else:
            factory = cast(Callable[[], object], f.default_factory)
            default = f.default if f.default is not MISSING else factory()
            kw["default"] = default
            if default not in (None, "", ()):
                shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
                text += f" (default: {shown})"
        p.add_argument(flag, help=text.strip() or None, **kw)


def build(cls, args: argparse.Namespace, **overrides):
    """cls from the fields `args` has (and `overrides`); a range error is an OptionError that
    names the field, which the CLI turns into its flag (flag_of, OptionError.named)."""
    values = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
    return cls(**{**values, **overrides})


def flag_of(parser: argparse.ArgumentParser, dest: str) -> str | None:
    """The long option string that fills `dest` in parser, or None."""
    for action in parser._actions:
        if action.dest == dest and action.option_strings:
            return action.option_strings[-1]
    return None


def regular_output(path: str | None) -> bool:
    """Whether an output path can be written without blocking the run: none, a file that does
    not exist yet, a regular file, or a character device (/dev/null). A FIFO blocks at open
    until something reads it (and ignores SIGTERM meanwhile); a socket cannot be opened."""
    import os
    import stat

    if path is None:
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:  # not there yet (or its folder is missing: the writer warns about that)
        return True
    return stat.S_ISREG(mode) or stat.S_ISCHR(mode)
