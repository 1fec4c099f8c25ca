"""Errors a user can cause. The CLI prints them as one line and exits non-zero."""


class SceneSpeakError(Exception):
    """Base class; the message names the file or value at fault."""


class BundleError(SceneSpeakError):
    """A model bundle is missing, damaged or inconsistent."""


class InputError(SceneSpeakError):
    """An image, source or option given by the user cannot be used."""


def printable(text: object) -> str:
    """`text` safe to print on one console line: control characters (newlines, ANSI escapes)
    and the undecodable bytes of a file name that is not UTF-8 are written as escapes
    ('\\n', '\\x1b', '\\udce9'), so no name can forge or split a line."""
    import unicodedata

    out = []
    for ch in str(text):
        cat = unicodedata.category(ch)
        if cat in ("Cc", "Cs") or (cat == "Cf" and ch not in "\u200d"):
            out.append(
                ch.encode("unicode_escape", "backslashreplace").decode("ascii")
                if cat != "Cs"
                else f"\\u{ord(ch):04x}"
            )
        else:
            out.append(ch)
    return "".join(out)


def console_safe() -> None:
    """Console output no locale can break: a character its codec (ISO-8859-1, ASCII) cannot
    write (a sign's €, an arrow) is written as an escape, not a traceback."""
    import io
    import sys

    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):  # not a test's capture
            try:
                stream.reconfigure(errors="backslashreplace")
            except ValueError:
                pass
