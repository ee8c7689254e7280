"""Spelling repair for social-media English: words bent out of shape, read back.

The last step of the ``social-v4`` normaliser (:mod:`encoders.textnorm`). Evasions of a text
classifier mostly bend single words: a letter dropped (``womn``), two swapped (``haet``), a space
left out (``todie``, ``slutbehaviour``). Each word of the cleaned text (lower-case ASCII) that
is neither common English nor a word of the social-media sources the policies were trained on
is read as the most probable of

- itself,
- itself with one letter dropped, one added, or two neighbours swapped (``womn`` -> ``women``),
- two words it runs together (``todie`` -> ``to die``),

by a noisy-channel model: the probability of the reading after the word before it (stupid
backoff over unigram and bigram counts, Brants et al. 2007), times the prior of the change (:data:`EDIT`, :data:`SPLIT`). One letter written for another is not read: it would turn
rare names into common words (``lyft`` -> ``left``) more often than it undoes an evasion.

Counts: the ``wordsegment`` package's English unigrams (333 k words) and bigrams (286 k), from
the Google Web Trillion Word Corpus (Norvig 2009). Protected words
(``encoders/data/social_words.txt``, written by ``adpolicy data social-words``) are the words
that appear at least twice in the training sources (Davidson, HateXplain, TOXIGEN) and are not
common English: slang, slurs, contractions without their apostrophe (``theyre``). They are never
changed, whatever their counts in web text: the model has read them as they are, and reading a
slur missing from web counts as a common word (``spicks`` -> ``picks``) would hide it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

EDIT = 1e-3  # prior of a one-letter slip: a reading must be 1,000x likelier in its context
SPLIT = 1e-1  # prior of a left-out space
COMMON = 1_000_000  # a word this frequent in web text is read as written
FUNCTION = 100_000_000  # a word of two letters a reading may bring: to, in, of, my, ...
MIN_LENGTH = 4  # shorter words are too ambiguous to repair (``gy``: gay, guy, gym)
BACKOFF = 0.4  # stupid backoff's factor for a pair never seen
PROTECTED_FILE = Path(__file__).with_name("data") / "social_words.txt"
_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_START = "<s>"
_ENDINGS = ("s", "es", "ed", "ing", "er", "ers", "y")


@dataclass(frozen=True)
class Speller:
    """Word counts and the protected words; :meth:`repair` reads a cleaned text.

    Attributes:
        unigrams: Word -> count.
        bigrams: ``"first second"`` -> count.
        dictionary: English words (inflected forms included); those found in web text are
            never changed.
        protected: Words never changed.
    """

    unigrams: Mapping[str, int]
    bigrams: Mapping[str, int]
    dictionary: frozenset[str]
    protected: frozenset[str]

    @functools.cached_property
    def total(self) -> float:
        return float(sum(self.unigrams.values()))

    def repair(self, text: str) -> str:
        """``text`` (lower-case ASCII words separated by single spaces) with each word that is
        neither common nor protected replaced by its most probable reading after the word
        before it (as read).

        Idempotent: a reading is made of words the speller never changes (:meth:`settled`),
        and a word kept as written is judged again after the same word."""
        out: list[str] = []
        for word in text.split():
            out.append(self.read(word, out[-1].rsplit(" ", 1)[-1] if out else _START))
        return " ".join(out)

    def read(self, word: str, before: str) -> str:
        """The most probable reading of ``word`` after the word ``before``."""
        if not self.repairable(word):
            return word
        best, score = word, self._score([word], before)
        for reading, prior in self._readings(word, before):
            candidate = self._score(reading.split(), before) + prior
            if candidate > score:
                best, score = reading, candidate
        return best

    def repairable(self, word: str) -> bool:
        """A word the speller may change: long enough, letters only, and none of: a dictionary
        word found in web text (not ``haet``, a Scots word of the word list), a common word, a
        protected word, a known word with an ending (``spicks``, ``kikes``: a slur's plural
        missing from web counts is no slip for ``picks``)."""
        count = self.unigrams.get(word, 0)
        return (
            len(word) >= MIN_LENGTH
            and word.isalpha()
            and not (count and word in self.dictionary)
            and count < COMMON
            and word not in self.protected
            and not any(word.endswith(end) and self._known(word[: -len(end)]) for end in _ENDINGS)
        )

    def settled(self, word: str) -> bool:
        """A word a reading may bring, and one the speller never changes: of three letters or
        more, a dictionary word found in web text, a common word or a protected word; of two,
        one as common as ``to`` and ``in``; of one, ``a`` or ``i``."""
        count = self.unigrams.get(word, 0)
        if len(word) < 3:
            return count >= FUNCTION and (len(word) == 2 or word in "ai")
        known = count > 0 and (word in self.dictionary or count >= COMMON)
        return known or word in self.protected

    def _known(self, word: str) -> bool:
        return word in self.dictionary or word in self.unigrams or word in self.protected

    def _readings(self, word: str, before: str) -> Iterator[tuple[str, float]]:
        """Settled words of :data:`MIN_LENGTH` or more one slip away (``lyft`` is not
        ``lft``), and settled pairs run together, with their log priors. A pair starts with a
        single letter (``ihate``) only after a longer word, so that no run of single letters
        comes out (which the spread-letter reading would join)."""
        edit, split = math.log(EDIT), math.log(SPLIT)
        for near in sorted(_one_slip(word)):
            if len(near) >= MIN_LENGTH and self.settled(near):
                yield near, edit
        letter_allowed = len(before) > 1  # also at the start, _START
        for i in range(1, len(word) - 1):
            first, second = word[:i], word[i:]
            if (len(first) > 1 or letter_allowed) and self.settled(first) and self.settled(second):
                yield f"{first} {second}", split

    def _score(self, words: list[str], before: str) -> float:
        """log P(words | before), by stupid backoff."""
        score = 0.0
        for word in words:
            score += self._log_next(before, word)
            before = word
        return score

    def _log_next(self, before: str, word: str) -> float:
        pair = self.bigrams.get(f"{before} {word}")
        if pair and before in self.unigrams:
            return math.log(pair / self.unigrams[before])
        count = self.unigrams.get(word)
        if count:
            return math.log(BACKOFF * count / self.total)
        return math.log(BACKOFF * 10.0 / self.total) - len(word) * math.log(10.0)  # unseen


def _one_slip(word: str) -> set[str]:
    """Every string one dropped, added or swapped letter away from ``word``."""
    cuts = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    dropped = {a + b[1:] for a, b in cuts if b}
    swapped = {a + b[1] + b[0] + b[2:] for a, b in cuts if len(b) > 1}
    added = {a + c + b for a, b in cuts for c in _LETTERS}
    return (dropped | swapped | added) - {word}


def _counts(lines: Iterable[str]) -> dict[str, int]:
    counts = {}
    for line in lines:
        key, count = line.rstrip("\n").rsplit("\t", 1)
        counts[key] = int(count)
    return counts


@functools.cache
def web_words() -> tuple[dict[str, int], dict[str, int], frozenset[str]]:
    """``wordsegment``'s unigram and bigram counts and its word list, read once per process
    (about 2 s)."""
    data = resources.files("wordsegment")
    with (data / "unigrams.txt").open() as unigrams, (data / "bigrams.txt").open() as bigrams:
        counts = _counts(unigrams), _counts(bigrams)
    return *counts, frozenset((data / "words.txt").read_text().split())


@functools.cache
def speller() -> Speller:
    """The speller of ``social-v4``: web counts, the word list and the protected words."""
    return Speller(*web_words(), frozenset(PROTECTED_FILE.read_text().split()))


def protected_words(texts: Iterable[str], min_count: int = 2) -> list[str]:
    """The words of ``texts`` (cleaned, as :func:`~encoders.textnorm.social_v4` reads them
    before the repair) that appear at least ``min_count`` times and that the speller would
    otherwise be free to change, sorted."""
    counts: dict[str, int] = {}
    for text in texts:
        for word in text.split():
            counts[word] = counts.get(word, 0) + 1
    free = Speller(*web_words(), frozenset())
    return sorted(w for w, c in counts.items() if c >= min_count and free.repairable(w))
