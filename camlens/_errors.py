"""Exception types: every camlens error is also a ``ValueError`` or ``TypeError``."""

from __future__ import annotations


class CamlensError(Exception):
    """Base class of the errors camlens raises on purpose; the message names the fix."""


class InputError(CamlensError, ValueError):
    """An argument has a wrong value (a missing file, an unknown class name, a bad shape)."""


class ArgumentTypeError(CamlensError, TypeError):
    """An argument has a type camlens cannot use."""


class LayerNotFoundError(InputError):
    """A layer name does not match any module of the model."""


class MethodNotFoundError(InputError):
    """A method name is not registered."""
