"""Spelling repair: slips and run-together words read back, everything else left as written."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from encoders.spelling import PROTECTED_FILE, protected_words, speller
from encoders.textnorm import social_v4

SLIPS = (  # (bent, as read): one letter swapped, dropped or added, or a space left out
    ("i haet women", "i hate women"),
    ("womn belong in a zoo", "women belong in a zoo"),
    ("deaht to all of them", "death to all of them"),
    ("i want to klil them all", "i want to kill them all"),
    ("they ought to be execuetd", "they ought to be executed"),
    ("women like you deserve todie", "women like you deserve to die"),
    ("typical slutbehaviour", "typical slut behaviour"),
    ("they are such massivescumbags", "they are such massive scumbags"),
)
AS_WRITTEN = (
    "lyft and hulu bundle",  # names one slip from a word of three letters, or none
    "shop glossier skims and zappos deals",
    "mexican pottery sale handmade in oaxaca",
    "the therapist is in",  # a dictionary word is never split
    "spicks should go back",  # a known word with an ending: a slur's plural is kept
    "theyre here",  # protected: read as written in the training sources
    "mp3 players for 2019",
)


@pytest.mark.parametrize(("bent", "read"), SLIPS)
def test_a_slip_or_a_missing_space_is_read_back(bent: str, read: str) -> None:
    assert speller().repair(bent) == read


@pytest.mark.parametrize("text", AS_WRITTEN)
def test_names_dictionary_and_protected_words_are_left_as_written(text: str) -> None:
    assert speller().repair(text) == text


def test_the_context_chooses_between_readings() -> None:
    """``haet`` is one swap from both ``hate`` and ``heat``: the word before decides."""
    assert speller().repair("i haet") == "i hate"
    assert speller().repair("the haet wave") == "the heat wave"


def test_a_split_never_makes_a_run_of_single_letters() -> None:
    """After a single letter a pair may not start with one (the spread-letter reading would
    join ``i m a little`` into ``ima``)."""
    assert speller().repair("i m alittle tired") == "i m alittle tired"
    assert speller().repair("just alittle tired") == "just a little tired"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet="aeihlmnorstuy ", min_size=1, max_size=9), max_size=8))
def test_the_repair_is_idempotent(words: list[str]) -> None:
    text = social_v4(" ".join(words))
    assert social_v4(text) == text


def test_protected_words_are_the_repeated_words_it_could_change() -> None:
    texts = ["yall thot niggaz glossierr hate", "thot niggaz hate", "glossierr the hate"]
    assert protected_words(texts) == ["glossierr", "niggaz", "thot"]  # not: yall (once), hate
    assert protected_words(texts, min_count=3) == []


def test_the_shipped_protected_words_are_sorted_lower_case_words() -> None:
    words = PROTECTED_FILE.read_text().split()
    assert len(words) > 1000
    assert words == sorted(set(words))
    assert all(w.isalpha() and w.islower() and w.isascii() for w in words)
