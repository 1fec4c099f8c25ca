"""Errors a user can cause. The CLI prints them as one line and exits non-zero."""


class SceneSpeakError(Exception):
    """Base class; the message names the file or value at fault."""


class BundleError(SceneSpeakError):
    """A model bundle is missing, damaged or inconsistent."""


class InputError(SceneSpeakError):
    """An image, source or option given by the user cannot be used."""
