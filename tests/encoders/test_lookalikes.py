"""Latin look-alikes: folded within Latin words, other scripts left as they are."""

from __future__ import annotations

import unicodedata

import pytest

from encoders.lookalikes import _LOOKALIKES, LOOKALIKES, fold_lookalikes, script_letters


def test_every_lookalike_is_a_letter_that_nfkc_and_nfd_leave_to_it() -> None:
    assert len(LOOKALIKES) == sum(len(chars) for chars in _LOOKALIKES.values())  # no duplicate
    assert len(LOOKALIKES) > 450
    for code, letter in LOOKALIKES.items():
        char = chr(code)
        assert not char.isascii()
        assert char.isalpha(), hex(code)
        assert unicodedata.normalize("NFKC", char) == char, hex(code)
        assert unicodedata.normalize("NFD", char) == char, hex(code)
        assert letter in "abcdefghijklmnopqrstuvwxyz"
        assert len(letter) == 1


@pytest.mark.parametrize(
    ("spelled", "latin"),
    [
        ("n\u0456gger", "nigger"),  # Cyrillic i
        ("N\u0406GGER", "NiGGER"),  # Cyrillic capital I reads as i, not l
        ("\u0397ate", "hate"),  # Greek capital eta
        ("k\u0456k\u0435", "kike"),  # Cyrillic i and e
        ("\u043cusli\u043cs", "muslims"),  # Cyrillic em: the small capital M's shape
        ("f\u00fcck", "fuck"),  # an accent is dropped
        ("fu\u0336ck", "fuck"),  # so is a stacked combining mark
        ("caf\u00e9 na\u00efve", "cafe naive"),
        ("\u0261ay \u0251ss", "gay ass"),  # Latin script g and alpha
    ],
)
def test_lookalikes_in_latin_words_read_as_latin(spelled: str, latin: str) -> None:
    assert fold_lookalikes(spelled) == latin


def test_a_word_all_of_lookalikes_folds_in_latin_text_or_a_text_of_lookalikes_alone() -> None:
    # the Cyrillic "а" and "ѕсum" are whole words of look-alikes, in English copy
    assert fold_lookalikes("you \u0430r\u0435 \u0430 \u0455\u0441um") == "you are a scum"
    assert fold_lookalikes("\u0430 \u0455\u0441\u0430m") == "a scam"
    # a text wholly of look-alikes (no letter of its script without one) is an evasion far
    # more often than Cyrillic that happens to use none of its own letters: read as Latin
    assert fold_lookalikes("\u041a\u0406\u041a\u0415") == "kike"
    assert fold_lookalikes("\u0441\u043e\u0440") == "cop"
    # one letter without a look-alike (п) marks real Cyrillic: left as it is
    assert fold_lookalikes("\u0441\u043e\u043f") == "\u0441\u043e\u043f"


@pytest.mark.parametrize(
    "text",
    [
        "Большая распродажа обуви, скидки до 50%",  # Russian: с, о, р, а, е look Latin
        "Μεγάλες εκπτώσεις σε όλα τα παπούτσια",  # Greek
        "Купите новый iPhone сегодня",  # Russian with a Latin brand name
        "全新iPhone手机优惠",
        "تخفيضات كبيرة على جميع المنتجات",
        "Plain ASCII: 30% off, w o r t h l e s s, b!tch",
    ],
)
def test_other_scripts_and_ascii_are_left_as_they_are(text: str) -> None:
    assert fold_lookalikes(text) == text


def test_script_letters_counts_latin_lookalike_and_other_letters() -> None:
    assert script_letters("Summer sale 50%") == (10, 0, 0)
    # Купите (К у п и т е): К, у, т, е have a look-alike; п, и none
    assert script_letters("Купите iPhone") == (6, 4, 2)
    assert script_letters("全新 🎉") == (0, 0, 2)
    assert script_letters("café") == (4, 0, 0)  # the accent is no letter
