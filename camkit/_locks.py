"""One lock per model object, so that calls sharing a model from several threads run in turn.

A call hooks the model's modules and switches their ``training`` flags for its duration; two
calls interleaved on one model would read each other's activations through those hooks, and
one would restore the flags while the other still runs. Calls on the same model object are
therefore serialised; calls on different objects (a ``copy.deepcopy`` per thread) run in
parallel. The lock is re-entrant, so a call may take it again (``explain`` runs ``auto_layer``'s
probe and its own forwards under one lock), and it is kept in a ``WeakKeyDictionary``, so it
goes away with the model.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()  # creating a model's lock must itself be atomic


def model_lock(model: nn.Module) -> threading.RLock:
    """The re-entrant lock of ``model``, created on first use."""
    lock = _LOCKS.get(model)
    if lock is None:
        with _LOCKS_GUARD:
            lock = _LOCKS.get(model)
            if lock is None:
                lock = threading.RLock()
                _LOCKS[model] = lock
    return lock


@contextmanager
def serialised(model: nn.Module) -> Iterator[None]:
    """Hold ``model``'s lock for the block: other threads' calls on it wait their turn."""
    with model_lock(model):
        yield
