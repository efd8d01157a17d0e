"""Which class each image is explained for, and the score whose gradient is taken."""

from __future__ import annotations

import difflib
import numbers
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from camkit._errors import ArgumentTypeError, InputError


@dataclass(frozen=True)
class Targets:
    """The resolved targets of one call.

    Attributes:
        scores: (B, K) scores to differentiate, still attached to the graph.
        indices: (B, K) class indices, or ``None`` for a custom score.
        labels: (B lists of K) class names, or ``None`` when the categories are unknown.
    """

    scores: torch.Tensor
    indices: torch.Tensor | None
    labels: list[list[str]] | None


def class_index(name: str, categories: Sequence[str] | None) -> int:
    """The index of class ``name`` among ``categories``.

    A name matches a class when it equals the class name, or one of its comma-separated synonyms
    ("tabby" in "tabby, tabby cat"), ignoring case, underscores and repeated spaces; an exact
    spelling decides between classes that differ only in case.

    Raises:
        ValueError: If the categories are unknown or no class has that name. When the name is a
            whole word of several class names ("cat": "tiger cat", "Persian cat", ...) the message
            lists them all; otherwise it suggests whole-word matches first, then close spellings.
    """
    if categories is None:
        raise InputError(
            f"`target` {name!r} is a class name but the model's class names are unknown; pass a "
            "class index, or a model from camkit.load_model which knows its categories"
        )
    if name in categories:  # exact spelling first: ImageNet has both "Cardigan" and "cardigan"
        return list(categories).index(name)
    query = _fold(name)
    synonyms = [[_fold(part) for part in category.split(",")] for category in categories]
    matches = [index for index, names in enumerate(synonyms) if query in names]
    if len(matches) == 1:
        return matches[0]
    if matches:
        options = ", ".join(f"{categories[i]!r} = {i}" for i in matches)
        raise InputError(
            f"`target` class {name!r} matches several classes ({options}); pass the exact "
            "spelling or the class index"
        )
    words = _whole_word_matches(query, synonyms)
    if len(words) > 1:
        listed = ", ".join(f"{categories[i]!r} ({i})" for i in words[:_LISTED])
        more = f" and {len(words) - _LISTED} more" if len(words) > _LISTED else ""
        raise InputError(
            f"`target` {name!r} names {len(words)} classes: {listed}{more}; pass one of these "
            "names or its index"
        )
    keys = [_fold(category) for category in categories]
    spelled = [keys.index(key) for key in difflib.get_close_matches(query, keys, n=3, cutoff=0.6)]
    close = (words + [i for i in spelled if i not in words])[:3]
    named = [f"{categories[i]!r} ({i})" for i in close]
    if named:
        listed = named[0] if len(named) == 1 else f"{', '.join(named[:-1])} or {named[-1]}"
        hint = f"; did you mean {listed}? Pass"
    else:
        hint = "; pass"
    raise InputError(
        f"`target` class {name!r} not found among the model's {len(categories)} classes{hint} "
        "an exact class name or its index"
    )


#: How many classes an ambiguous word lists before "and N more".
_LISTED = 12


def _whole_word_matches(query: str, synonyms: list[list[str]]) -> list[int]:
    """Classes with ``query`` as a whole word (or words) of a name: "cat" in "tiger cat"."""
    pattern = re.compile(rf"(?<![a-z0-9]){re.escape(query)}(?![a-z0-9])")
    return [index for index, names in enumerate(synonyms) if any(map(pattern.search, names))]


def _fold(name: str) -> str:
    """Compare class names ignoring case, underscores and repeated spaces ("Tiger_cat")."""
    return " ".join(name.replace("_", " ").lower().split())


def _indices(
    target: object, batch: int, classes: int, categories: Sequence[str] | None
) -> list[int]:
    if isinstance(target, bool):
        raise ArgumentTypeError("`target` must be a class index or name, not a bool")
    if isinstance(target, np.ndarray) and target.dtype.kind in "OUS":  # class names
        target = target.tolist()
    if isinstance(target, numbers.Integral):  # numpy integers too (an argmax result)
        indices = [int(target)] * batch
    elif isinstance(target, str):
        indices = [class_index(target, categories)] * batch
    elif isinstance(target, (torch.Tensor, np.ndarray)):
        tensor = torch.as_tensor(target)
        if (
            tensor.dim() > 1
            or tensor.is_floating_point()
            or tensor.is_complex()
            or tensor.dtype == torch.bool
        ):
            raise ArgumentTypeError(
                f"`target` {type(target).__name__} has shape {tuple(tensor.shape)} and dtype "
                f"{tensor.dtype}; pass integer class indices, one per image or one for all"
            )
        indices = [int(v) for v in tensor.reshape(-1).tolist()]
        indices = indices * batch if len(indices) == 1 else indices
    elif isinstance(target, (list, tuple)):
        indices = [
            class_index(item, categories)
            if isinstance(item, str)
            else _indices(item, 1, classes, categories)[0]
            for item in target
        ]
    else:
        raise ArgumentTypeError(
            f"`target` of type {type(target).__name__} is not supported; pass None, a class index, "
            "a class name, one of those per image, or a callable on the model output"
        )
    if len(indices) != batch:
        raise InputError(
            f"`target` gives {len(indices)} classes for {batch} images; "
            "give one per image or one for all"
        )
    for index in indices:
        if not 0 <= index < classes:
            raise InputError(
                f"`target` class index {index} is out of range for a model with {classes} classes; "
                f"use 0 to {classes - 1}"
            )
    return indices


def resolve_targets(
    target: object,
    top_k: int | None,
    logits: torch.Tensor,
    output: object,
    categories: Sequence[str] | None,
) -> Targets:
    """Turn the user's ``target``/``top_k`` into (B, K) scores, indices and names.

    Raises:
        ValueError: For an out-of-range index, unknown name, or a count not matching the batch.
        TypeError: For an unsupported ``target`` or a callable returning the wrong shape.
    """
    if logits.dim() != 2:
        raise InputError(
            f"the model's output has shape {tuple(logits.shape)}, not (B, classes); pass `target=` "
            "a callable that reduces the output to one score per image"
        )
    batch, classes = logits.shape
    if top_k is not None:
        if top_k > classes:
            raise InputError(f"`top_k` {top_k} exceeds the model's {classes} classes")
        indices = logits.detach().topk(top_k, dim=1).indices
    elif target is None:
        indices = logits.detach().argmax(dim=1, keepdim=True)
    elif callable(target) and not isinstance(target, torch.Tensor):
        score = _custom_score(target, output, batch)
        return Targets(score, None, None)
    else:
        indices = torch.tensor(_indices(target, batch, classes, categories), device=logits.device)[
            :, None
        ]
    scores = logits.gather(1, indices)
    labels = None
    if categories is not None and len(categories) == classes:
        labels = [[categories[i] for i in row] for row in indices.tolist()]
    return Targets(scores, indices.cpu(), labels)


def _custom_score(
    function: Callable[[object], torch.Tensor], output: object, batch: int
) -> torch.Tensor:
    score = function(output)
    if not isinstance(score, torch.Tensor):
        raise ArgumentTypeError(
            f"`target` callable returned a {type(score).__name__}; "
            "return a tensor with one score per image"
        )
    if score.numel() != batch:
        raise InputError(
            f"`target` callable returned shape {tuple(score.shape)} for {batch} images; return one "
            "score per image, shape (B,)"
        )
    return score.reshape(batch, 1)
