"""The faithfulness benchmark's choice of words and cells."""

from __future__ import annotations

import random

import numpy as np
from PIL import Image

from benchmarks.explain_faithfulness import TOP, replaced, top_and_random, without


def test_the_top_three_and_three_random_leave_out_unexplained_words() -> None:
    attribution = [0.1, None, 0.5, -0.2, 0.3, None, 0.0]
    top, rand = top_and_random(attribution, random.Random(0))
    assert top == [2, 4, 0]
    assert len(rand) == len(set(rand)) == TOP
    assert not {1, 5} & set(rand)


def test_deleted_words_and_replaced_cells() -> None:
    assert without(["a", "b", "c", "d"], [0, 2]) == "b d"
    image = Image.new("RGB", (4, 4), (0, 0, 0))
    source = Image.new("RGB", (4, 4), (255, 255, 255))
    out = np.asarray(replaced(image, source, [(0, 0, 2, 2), (2, 2, 4, 4)]))[..., 0]
    assert out.tolist() == [[255, 255, 0, 0], [255, 255, 0, 0], [0, 0, 255, 255], [0, 0, 255, 255]]
    assert np.asarray(image).max() == 0  # the original is left as it was
