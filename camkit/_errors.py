"""Exception types: every camkit error is also a ``ValueError`` or ``TypeError``."""

from __future__ import annotations


class CamkitError(Exception):
    """Base class of the errors camkit raises on purpose; the message names the fix."""


class InputError(CamkitError, ValueError):
    """An argument has a wrong value (a missing file, an unknown class name, a bad shape)."""


class ArgumentTypeError(CamkitError, TypeError):
    """An argument has a type camkit cannot use."""


class LayerNotFoundError(InputError):
    """A layer name does not match any module of the model."""


class MethodNotFoundError(InputError):
    """A method name is not registered."""


class WeightsUnavailableError(InputError):
    """Pretrained weights cannot be had here (a download offline, or a package not installed)."""


class MapWarning(UserWarning):
    """A heatmap that would mislead: blank, noise, a probability explained, a model in training.

    One line naming the layer, the class and what to do. :attr:`camkit.Explanation.warnings`
    keeps the messages even when warnings are filtered, and camkit's figures draw a warned map
    flat with the message instead of in full-scale colour.
    """
