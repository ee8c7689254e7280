"""Latin look-alikes: letters of other scripts (and Latin variants) read as the Latin letter
they imitate, and how much of a text is in the Latin script at all.

``_LOOKALIKES`` is derived from Unicode TR39's ``confusables.txt`` (version 14.0.0): every
letter that the file maps to a single Latin letter (its prototype), lower-cased. A prototype
that is a Latin small capital, or shares its letters with one (Cyrillic ``м`` and ``ᴍ``), or
kra, reads as that letter; the prototype of ``I`` and ``l`` (TR39 writes both as ``l``) reads
as ``i`` for an upper-case source (Greek ``Ι``, Cyrillic ``І``) and ``l`` otherwise; the Latin
small capitals themselves are added. Left out: what NFKC already maps
(fullwidth forms, mathematical alphanumerics, superscripts), letters that decompose under NFD
(an accent is dropped instead, see :func:`fold_lookalikes`), and letters whose prototype is not
one Latin letter (``ɱ`` -> ``rn``, Greek ``λ``).
"""

from __future__ import annotations

import re
import unicodedata

_LOOKALIKES = {
    "a": "ɑΑαАаᎪᗅᴀꓮꭺ𐊠𖽀",
    "b": "ƀƂƃƄɓʙΒБВЬвѢѣҌҍᏏᏴᏼᑲᑳᖯᗷꓐꞴ𐊂𐊡𐌁",
    "c": "ȼСсҪҫᏟᴄⲤⲥꓚꮯ𐊢𐌂𐐕𐐽𐔜",
    "d": "ÐĐđƉƌɖɗԁᎠᏧᑯᗞᗪᴅꓒꓓꭰ",
    "e": "ɆɇΕЕеҽҿᎬᴇⴹꓰꬲꭼ𐊆𑢦𑢮",
    "f": "ƑƒϜքᖴᵮẝꓝꜰꞘꞙꬵ𐊇𐊥𐔥𑢢𑣂",
    "g": "ƍǤǥɠɡɢԌԍցᏀᏳᏻᶃꓖꮐ",
    "h": "ĦħɦʜΗНнћҢңһӇӈӉӊհᎻᏂᏲᕼⱧⲎꓧꚕꮋ𐋏",
    "i": "ıƖƗɨɩɪΙιІіӀӏᎥᵻᵼⲒꙇꭵ𑣃",
    "j": "ɈɉͿϳЈјᎫᒍᴊꓙꞲꭻ",
    "k": "ƙΚκКкҚқҞҟᏦᛕᴋⱩⲔⲕꓗꝀꮶ𐔘",
    "l": "ŁłƚǀɫɭʟוןاٳߊᏞᒪᛁⳐⳑⵏꓡꓲꮮ𐊊𐌉𐐛𐑃𐔦𑢣𑢲𖼖𖼨",
    "m": "ΜϺМмӍᎷᗰᛖᴍⲘꓟꮇ𐊰𐌑",
    "n": "ƝƞɳɴΝηոռᵰⲚꓠ𐔓",
    "o": "ØøƟɵΘΟθοσОоѲѳӨөՕօסهھہەۿଠഠဝჿዐᎾᏫᴏᴑⲞⲟⴱⵁⵔꓳꝊꝋꬽꬾꭴꮎꮻ𐊒𐊫𐐄𐐬𐓂𐓪𐔖𑢵𑣈𑣗",
    "p": "ƥΡρРрᏢᑭᴘᴩᵽⲢⲣꓑꮲ𐊕",
    "q": "ʠԛգզⵕꞯ",
    "r": "ƦɍɼɽʀгғᎡᏒᖇᴦᵲⲅꓣꭇꭈꭱꮁꮢ𐒴𖼵",
    "s": "ƽʂЅѕՏᏕᏚᵴꓢꜱꮪ𐊖𐐠𐑈𑣁𖼺",
    "t": "ŦŧƭƮȾΤτТтҬҭᎢᴛᵵⲦꓔꭲ𐊗𐊱𐌕𑢼𖼊",
    "u": "ɄʋυՍսሀᏌᑌᴜᵾꓴꞟꭎꭒꮜ𐓎𐓶𑢸𑣘𖽂",
    "v": "νѴѵטᏙᐯᴠⴸꓦꛟꮩ𐔝𑜆𑢠𑣀𖼈",
    "w": "ɯѡѽԜԝաᎳᏔᴡꓪꝡꮃ𑓅𑜊𑜎𑜏",
    "x": "ΧХхҲᕁᕽᚷⲬⵝꓫꞳ𐊐𐊴𐌗𐔧",
    "y": "ƴɎɏɣʏΥγУуҮүҰұყᎩᎽᶌỿⲨꓬꭚ𐊲𑢤𑣜𖽃",
    "z": "ƵƶȤȥʐΖᏃᴢᵶꓜꮓ𑢩𑣄",
}
LOOKALIKES: dict[int, str] = {ord(c): x for x, chars in _LOOKALIKES.items() for c in chars}
# a run of letters and combining marks (the blocks an accent or a stacked "zalgo" mark uses)
_WORD = re.compile(
    r"(?:[^\W\d_]|[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f])+"
)


def is_latin(letter: str) -> bool:
    """Whether a letter is in the Latin script (ASCII or not: ``é``, ``ɑ``, ``ᴀ``)."""
    return letter.isascii() or unicodedata.name(letter, "").startswith("LATIN ")


def script_letters(text: str) -> tuple[int, int, int]:
    """Count a text's letters (after NFD, so an accent is no letter).

    Returns:
        Latin letters, letters of other scripts with a Latin look-alike
        (:data:`LOOKALIKES`), and letters of other scripts without one.
    """
    latin = lookalike = other = 0
    for char in unicodedata.normalize("NFD", text):
        if not char.isalpha():
            continue
        if is_latin(char):
            latin += 1
        elif ord(char) in LOOKALIKES:
            lookalike += 1
        else:
            other += 1
    return latin, lookalike, other


def fold_lookalikes(text: str) -> str:
    """Read look-alikes as the Latin letters they imitate, and drop accents, in Latin words.

    A word (a run of letters and combining marks) is folded when it has a Latin letter
    (``nіgger`` with a Cyrillic ``і``, ``fück``), or when all its letters are look-alikes and the
    text has more Latin letters than letters of other scripts without a look-alike (``аss``
    all in Cyrillic, inside English copy), or none of the latter at all (``КІКЕ``, a text
    written wholly in look-alikes: real Cyrillic or Greek text has letters without one).
    Other words stay as they are: Cyrillic or Greek text is not turned into Latin nonsense.
    ASCII text comes back unchanged. Apply it after NFKC (which already reads fullwidth forms
    and mathematical letters as Latin) and before lower-casing (Greek ``Β`` is ``b``, its
    lower case ``β`` is no ``b``).

    Args:
        text: Any text.

    Returns:
        The text, its Latin words folded: look-alikes replaced by lower-case ASCII letters,
        combining marks removed.
    """
    if text.isascii():
        return text
    latin, _, other = script_letters(text)
    latin_text = latin > other or other == 0

    def fold(match: re.Match[str]) -> str:
        word = unicodedata.normalize("NFD", match.group(0))
        letters = [c for c in word if c.isalpha()]
        if any(is_latin(c) for c in letters) or (
            latin_text and all(ord(c) in LOOKALIKES for c in letters)
        ):
            bare = "".join(c for c in word if not unicodedata.category(c).startswith("M"))
            return unicodedata.normalize("NFC", bare.translate(LOOKALIKES))
        return match.group(0)

    return _WORD.sub(fold, text)
