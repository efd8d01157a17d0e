"""Class names as a learner types them: whole words, synonyms, ambiguity, suggestions."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

import camkit
from camkit._targets import class_index
from camkit.models import imagenet_categories

IMAGENET = imagenet_categories()


def _message(name: str, categories=IMAGENET) -> str:
    with pytest.raises(ValueError) as error:
        class_index(name, categories)
    return str(error.value)


def test_a_word_naming_several_classes_lists_them_all() -> None:
    message = _message("cat")
    assert "'cat' names 5 classes" in message
    for name, index in [
        ("tiger cat", 282),
        ("Persian cat", 283),
        ("Siamese cat", 284),
        ("Egyptian cat", 285),
        ("Madagascar cat", 383),  # a lemur, but ImageNet calls it so
    ]:
        assert f"{name!r} ({index})" in message
    # Spelling neighbours are no longer offered for a word that is in class names.
    assert "crate" not in message and "castle" not in message


def test_a_long_list_is_cut_with_a_count() -> None:
    message = _message("terrier")
    terriers = [c for c in IMAGENET if re.search(r"\bterrier\b", c.lower())]
    assert len(terriers) > 12
    assert f"'terrier' names {len(terriers)} classes" in message
    assert f"and {len(terriers) - 12} more" in message
    assert message.count(" terrier' (") == 12


def test_a_whole_word_match_comes_before_spellings() -> None:
    message = _message("bulldog")
    assert "did you mean 'French bulldog' (245)," in message  # first, ahead of 'bullfrog'
    assert message.index("French bulldog") < message.index("bullfrog")


def test_part_of_a_word_is_not_a_whole_word() -> None:
    # "at" is inside "cat", "hat", ... but is no word of any class name: no list of classes.
    message = _message("at")
    assert "names" not in message and "not found among the model's 1000 classes" in message


def test_spelling_suggestions_still_work() -> None:
    assert "did you mean 'tiger cat' (282)" in _message("tigr cat")


def test_no_capital_after_a_semicolon() -> None:
    for name in ["cat", "bulldog", "xyzzy", "tigr cat", "CARDIGAN"]:
        message = _message(name)
        assert not re.search(r";\s+[A-Z]", message), message
    assert _message("xyzzy").endswith("classes; pass an exact class name or its index")


def test_exact_names_case_underscores_and_synonyms() -> None:
    assert class_index("tiger cat", IMAGENET) == 282
    assert class_index("Tiger_Cat", IMAGENET) == 282
    assert class_index("  french   BULLDOG ", IMAGENET) == 245
    # Category lists with WordNet synonyms ("tabby, tabby cat") accept each synonym.
    synonyms = ["tench, Tinca tinca", "tabby, tabby cat", "tiger cat"]
    assert class_index("tabby cat", synonyms) == 1
    assert class_index("Tinca tinca", synonyms) == 0
    assert class_index("tiger cat", synonyms) == 2
    # "cat" is a whole word of two of them.
    assert "'cat' names 2 classes: 'tabby, tabby cat' (1), 'tiger cat' (2)" in _message(
        "cat", synonyms
    )


def test_explain_reports_the_ambiguous_word() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
    )
    loaded = camkit.LoadedModel(
        model, categories=["tiger cat", "Persian cat", "dog"], name="tiny", pretrained=False
    )
    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(ValueError, match=r"'cat' names 2 classes: 'tiger cat' \(0\), 'Persian"):
        camkit.explain(loaded, x, target="cat", layers="0")
    explanation = camkit.explain(loaded, x, target="persian CAT", layers="0")
    assert explanation.targets.tolist() == [[1]]
    assert explanation.labels == [["Persian cat"]]
