"""Text normalisers: the cleaning a text model was trained with, applied again at scoring.

A normaliser is part of the model: :class:`~encoders.text.TextSettings` names it, the
checkpoint's config stores the name, and the text preparation (offline scoring, training and
the TorchServe handler alike) applies it before tokenizing, so no train/serve skew.

``social-v1`` brings raw posts and ad copy to the form of HateXplain's released text (see
``../shared/data/hatexplain/README.md``): lower case, ``user`` for mentions, no links, no
punctuation or emoji, apostrophes dropped (``don't`` -> ``dont``). Before punctuation is
dropped, symbols written inside a word as letters are read as those letters
(``b!tch`` -> ``bitch``, ``sh1t`` -> ``shit``), so common spelling variants survive the
cleaning. ``social-v2`` is ``social-v1`` followed by two more readings of
spelling variants: letters spread out by spaces are joined (a run of three or more single
letters: ``k i k e`` -> ``kike``, ``w o r t h l e s s`` -> ``worthless``), and an ``8`` after a
letter reads as "ate" (``h8`` -> ``hate``, ``h8ful`` -> ``hateful``, ``gr8`` -> ``grate``).
``social-v3`` is ``social-v2`` that first reads look-alike letters as the Latin
letters they imitate and drops accents, within Latin words (:func:`encoders.lookalikes.
fold_lookalikes`: ``nіgger`` with a Cyrillic ``і``, ``Ηate`` with a Greek ``Η``, ``fück``);
on ASCII text it is ``social-v2``. ``social-v4`` is ``social-v3`` with three
more readings: a digit ending a word of three or more letters reads as the letter it imitates
(``crippl3`` -> ``cripple``, ``hell0`` -> ``hello``), a run of spread letters keeps a leading
``a`` or ``i`` apart where the joined run is no word (``a q u e e r`` -> ``a queer``, not
``aqueer``), and words bent by one slip or run together are read back
(:mod:`encoders.spelling`: ``haet`` -> ``hate``, ``todie`` -> ``to die``). ``social-v5`` (the
default's) is ``social-v4`` that first reads masked profanity: a word with asterisks for
letters (``f*cking``, ``sh*t``, ``a**hole``, ``sh**``) reads as the profanity or slur of
:data:`MASKED_WORDS` it matches, each asterisk one letter (a run of them any number of
letters if no word matches letter for letter). Asterisks that start or end a word are
footnotes or markup (``*T&Cs``, ``Mother*``, ``Grade A*``, ``**NEW**``) and hide nothing, but
for two or more after two letters or more (``sh**``); a masked word of fewer than four
characters (``A*s``) is not read. An ``@`` that starts such a word is its ``a`` (``@ss``,
which ``social-v4`` read as a mention). A masked word that matches none keeps ``social-v4``'s
reading (the asterisks dropped, an ``@word`` a mention). Advertisers mask the words they know
are offensive, and the bare remains (``fcking``, ``sht``) read as nothing. Every normaliser is
idempotent: ``normalise(normalise(x)) == normalise(x)``.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Callable

from encoders.lookalikes import fold_lookalikes
from encoders.spelling import speller, web_words

_URL = re.compile(r"(?:https?://|www\.)\S+|\b\S+\.(?:com|net|org|ly)/\S*", re.IGNORECASE)
_MENTION = re.compile(r"(?<![\w@])@\w+")
_RETWEET = re.compile(r"\bRT\b")
_LEET = (  # a symbol between letters reads as a letter
    (re.compile(r"(?<=[a-z])[@4](?=[a-z])"), "a"),
    (re.compile(r"(?<=[a-z])[!1|](?=[a-z])"), "i"),
    (re.compile(r"(?<=[a-z])3(?=[a-z])"), "e"),
    (re.compile(r"(?<=[a-z])0(?=[a-z])"), "o"),
    (re.compile(r"(?<=[a-z])\$\$(?=[a-z])"), "ss"),
    (re.compile(r"(?<=[a-z])\$(?=[a-z])|^\$(?=[a-z])|(?<= )\$(?=[a-z])"), "s"),
    (re.compile(r"(?<=[a-z])[*.\-_](?=[a-z])"), ""),
)
_SPREAD = re.compile(r"\b[a-z](?: [a-z]\b){2,}")  # three or more single letters in a row
_EIGHT = re.compile(r"(?<=[a-z])8")
_FINAL_DIGITS = (  # a digit ending a word of three or more letters reads as a letter
    (re.compile(r"(?<=[a-z]{3})3\b"), "e"),
    (re.compile(r"(?<=[a-z]{3})0\b"), "o"),
    (re.compile(r"(?<=[a-z]{3})1\b"), "i"),
)
# Words that are masked in writing because they offend, in the order a masked word is tried.
MASKED_WORDS = (
    "fuck", "fucking", "fucked", "fucker", "fuckers", "fuckin", "motherfucker", "shit", "shitty",
    "bullshit", "bitch", "bitches", "ass", "asses", "asshole", "assholes", "damn", "hell", "dick",
    "dickhead", "dickheads", "cunt", "cunts", "piss", "pissed", "bastard", "bastards", "crap",
    "whore", "whores", "slut", "sluts", "cock", "pussy", "twat", "wanker", "nigger", "niggers",
    "nigga", "niggas", "faggot", "faggots", "fag", "fags", "retard", "retards", "spic", "spics",
    "kike", "kikes", "chink", "chinks", "tranny", "trannies", "dyke", "dykes",
)  # fmt: skip
MIN_MASKED = 4  # characters of a masked word, asterisks included, for it to be read
_MASKED = re.compile(r"(?<![\w*])[a-z]*\*+[a-z*]*(?![\w*])", re.IGNORECASE)
_AT_WORD = re.compile(r"(?<![\w@])@([a-z]+)(?![\w@]|\.\w)", re.IGNORECASE)  # a mention, or "@ss"
_APOSTROPHE = re.compile(r"(?<=[a-z])['\u2019](?=[a-z])")
_OTHER = re.compile(r"[^a-z0-9]+")


def social_v1(text: str) -> str:
    """Raw post or ad copy -> HateXplain's normalised form (see the module docstring)."""
    return _cleaned(decoded(text))


def decoded(text: str) -> str:
    """HTML entities decoded, then NFKC (fullwidth and mathematical letters read as Latin)."""
    return unicodedata.normalize("NFKC", html.unescape(text))


def _cleaned(text: str) -> str:
    """``social-v1`` after decoding: no links or mentions, lower case, symbols read as letters,
    then only ASCII letters and digits."""
    text = _URL.sub(" ", text)
    text = _MENTION.sub(" user ", text)
    text = _RETWEET.sub(" ", text)
    text = text.lower()
    for pattern, letter in _LEET:
        text = pattern.sub(letter, text)
    text = _APOSTROPHE.sub("", text)
    return " ".join(_OTHER.sub(" ", text).split())


def social_v2(text: str) -> str:
    """``social-v1``, then spread letters joined and ``8`` after a letter read as "ate"."""
    return _spelling_read(social_v1(text))


def _spelling_read(text: str) -> str:
    text = _SPREAD.sub(lambda m: m.group(0).replace(" ", ""), text)
    return _EIGHT.sub("ate", text)


def social_v3(text: str) -> str:
    """``social-v2`` with look-alike letters in Latin words read as Latin, accents dropped."""
    return _spelling_read(_cleaned(fold_lookalikes(decoded(text))))


def social_v4(text: str) -> str:
    """``social-v3`` with word-final digits read, spread letters kept apart from a leading
    article, and bent words read back (see the module docstring)."""
    return speller().repair(social_v4_cleaned(text))


def social_v4_cleaned(text: str) -> str:
    """``social-v4`` before its spelling repair: the words :mod:`encoders.spelling` reads."""
    text = _cleaned(fold_lookalikes(decoded(text)))
    for pattern, letter in _FINAL_DIGITS:
        text = pattern.sub(letter, text)
    text = _SPREAD.sub(_joined_apart_from_article, text)
    return _EIGHT.sub("ate", text)


def social_v5(text: str) -> str:
    """``social-v4`` with masked profanity read first (see the module docstring)."""
    return social_v4(_AT_WORD.sub(_at_read, _MASKED.sub(_unmasked, text)))


def _at_read(match: re.Match[str]) -> str:
    """``@ss`` is "ass", not a mention: an ``@`` before letters that then spell a masked word."""
    word = f"a{match.group(1).lower()}"
    return word if word in MASKED_WORDS else match.group(0)


def _unmasked(match: re.Match[str]) -> str:
    """A masked word read (module docstring). Asterisks inside a word hide letters; one that
    starts or ends it is a footnote or markup (``*T&Cs``, ``Mother*``, ``A*``, ``**NEW**``),
    except two or more after at least two letters (``sh**``), read letter for letter."""
    masked = match.group(0).lower()
    core = masked.strip("*")
    trailing = len(masked) - len(masked.rstrip("*"))
    if "*" in core:
        patterns = [core.replace("*", "[a-z]"), re.sub(r"\*+", "[a-z]+", core)]
    elif trailing >= 2 and len(core) >= 2 and not masked.startswith("*"):
        patterns = [core + "[a-z]" * trailing]
        core += "*" * trailing
    else:
        return masked
    if len(core) < MIN_MASKED or sum(c.isalpha() for c in core) < 2:
        return masked  # too little left to tell the word (A*s, f*g)
    for pattern in patterns:
        for word in MASKED_WORDS:
            if re.fullmatch(pattern, word):
                return word
    return masked


def _joined_apart_from_article(match: re.Match[str]) -> str:
    joined = match.group(0).replace(" ", "")
    if match.start() > 0 and joined[0] in "ai" and joined not in web_words()[0]:
        return f"{joined[0]} {joined[1:]}"
    return joined


def identity(text: str) -> str:
    """No normalisation (the text as given)."""
    return text


NORMALIZERS: dict[str, Callable[[str], str]] = {
    "none": identity,
    "social-v1": social_v1,
    "social-v2": social_v2,
    "social-v3": social_v3,
    "social-v4": social_v4,
    "social-v5": social_v5,
}


def get_normalizer(name: str) -> Callable[[str], str]:
    """The normaliser registered as ``name``.

    Raises:
        ValueError: An unknown name, with the known ones.
    """
    try:
        return NORMALIZERS[name]
    except KeyError:
        raise ValueError(f"text normaliser {name!r}: one of {sorted(NORMALIZERS)}") from None
