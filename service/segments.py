"""SMS encoding choice and segment counting (GSM 03.38 / UCS-2).

A message is GSM-7 when every character is in the default alphabet or its
extension table, and UCS-2 otherwise. Long messages are split the way a
handset would: the concatenation header takes room from each segment, an
escape pair never straddles two segments, and neither does a surrogate pair.
"""

from __future__ import annotations

from dataclasses import dataclass

GSM7 = "GSM-7"
UCS2 = "UCS-2"

# The GSM 03.38 basic table, row by row; 0x1B (ESC) is left out because it only
# introduces an extension character and is never text on its own.
GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
# Each of these is sent as ESC plus one septet, so it costs two.
GSM_EXTENSION = frozenset("\f^{}\\[~]|€")
GSM_ALPHABET = GSM_BASIC | GSM_EXTENSION

GSM7_SINGLE = 160
GSM7_MULTI = 153
UCS2_SINGLE = 70
UCS2_MULTI = 67


@dataclass(frozen=True, slots=True)
class Segmentation:
    encoding: str
    """`GSM7` or `UCS2`."""
    units: int
    """Septets for GSM-7 (extension characters cost 2); UTF-16 code units for UCS-2."""
    segments: int
    """How many SMS the text is sent as; an empty text is still one SMS."""
    parts: tuple[str, ...]
    """The text as it would be split into those segments; joined, it is the text."""


def _gsm7_cost(char: str) -> int:
    return 2 if char in GSM_EXTENSION else 1


def _ucs2_cost(char: str) -> int:
    return 2 if ord(char) > 0xFFFF else 1


def segment(text: str) -> Segmentation:
    """How `text` is encoded, what it costs, and how it is split into SMS segments."""
    if GSM_ALPHABET.issuperset(text):
        encoding, single, multi, cost = GSM7, GSM7_SINGLE, GSM7_MULTI, _gsm7_cost
        # Counting with str.count runs in C; this path sees every message.
        units = len(text) + sum(text.count(char) for char in GSM_EXTENSION)
    else:
        encoding, single, multi, cost = UCS2, UCS2_SINGLE, UCS2_MULTI, _ucs2_cost
        units = len(text.encode("utf-16-le")) // 2

    if units <= single:
        return Segmentation(encoding, units, 1, (text,))

    parts: list[str] = []
    start = 0
    used = 0
    for index, char in enumerate(text):
        char_cost = cost(char)
        # A character that does not fit whole opens the next segment, which
        # may leave this one a unit short of the budget.
        if used + char_cost > multi:
            parts.append(text[start:index])
            start = index
            used = 0
        used += char_cost
    parts.append(text[start:])
    return Segmentation(encoding, units, len(parts), tuple(parts))
