from __future__ import annotations

import pytest

from ensemble.training.textcheck import is_right
from ensemble.training.textdata import NOT_HATE


@pytest.mark.parametrize(
    ("predicted", "expected", "right"),
    [
        ("hate", "hate", True),
        ("offensive", "hate", False),
        ("normal", "offensive", False),
        ("normal", NOT_HATE, True),
        ("offensive", NOT_HATE, True),  # HateCheck's profanity and insults are not hate
        ("hate", NOT_HATE, False),
    ],
)
def test_a_binary_expectation_takes_any_class_but_hate(
    predicted: str, expected: str, right: bool
) -> None:
    assert is_right(predicted, expected) is right
