"""Regular-expression pieces for identifiers spoken aloud, as speech-to-text writes them.

Transcription services write "five five five, two one eight, four four one zero", "the ninth of
october", "john dot smith at gmail dot com" and "two fifty four maple street". These pieces let
the pattern recognizers (:mod:`.recognizers`) match the spoken forms next to the written ones.
They are vocabulary, not a parser: a match is replaced, never converted back to digits.
"""

from __future__ import annotations

__all__ = [
    "DAY_ORDINAL",
    "DIGIT_WORD",
    "MONTH",
    "NUMBER_WORDS",
    "SPOKEN_DIGITS",
    "SPOKEN_NUMBER",
    "SPOKEN_YEAR",
    "TLD",
    "digit_run",
]

_ONES = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_TEENS = ("ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen")
_TENS = ("twenty", "thirty", "forty", "fourty", "fifty", "sixty", "seventy", "eighty", "ninety")

#: A digit as people say it in a number read out: "oh" and "o" for zero, "double"/"triple" before one.
DIGIT_WORD = r"(?:zero|oh|o|nought|one|two|three|four|five|six|seven|eight|nine|niner)"
_DIGIT_UNIT = rf"(?:(?:double|triple)[\s-]+{DIGIT_WORD}|{DIGIT_WORD}|\d)"
_SEP = r"(?:[\s,.\-]+|\s+(?:dash|hyphen)\s+)"


def digit_run(min_digits: int, max_digits: int = 20) -> str:
    """A run of ``min_digits``..``max_digits`` digits said one by one (digits written as digits may mix in).

    "double five" counts as one unit, so the bounds are on units, a little generous on purpose.
    """
    lo = max(1, min_digits - 1)
    return rf"(?<![\w-]){_DIGIT_UNIT}(?:{_SEP}{_DIGIT_UNIT}){{{lo - 1},{max_digits - 1}}}(?![\w-])"


#: Seven or more digits said one by one: phone numbers, account and record numbers.
SPOKEN_DIGITS = digit_run(7)

_BELOW_100 = (
    rf"(?:(?:{'|'.join(_TENS)})(?:[\s-](?:{'|'.join(_ONES)}))?|{'|'.join(_TEENS)}|{'|'.join(_ONES)})"
)
#: A number said as a number: "two fifty four", "twelve", "one hundred and six", "ninety two".
SPOKEN_NUMBER = (
    rf"(?:(?:{'|'.join(_ONES)})\s+(?:hundred|thousand)(?:\s+(?:and\s+)?{_BELOW_100})?"
    rf"|(?:{'|'.join(_ONES)}|{'|'.join(_TEENS)}|{'|'.join(_TENS)})(?:\s+{_BELOW_100})?"
    rf"|{_BELOW_100})"
)
#: A year said aloud: "nineteen eighty four", "twenty twenty one", "two thousand and three".
SPOKEN_YEAR = (
    rf"(?:(?:nineteen|twenty)\s+(?:{_BELOW_100}|hundred)|two\s+thousand(?:\s+(?:and\s+)?{_BELOW_100})?)"
)

_ORD_ONES = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth")
_ORD_TEENS = ("tenth", "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth",
              "seventeenth", "eighteenth", "nineteenth")
#: A day of the month as an ordinal, spoken or written: "ninth", "twenty first", "21st", "3".
DAY_ORDINAL = (
    rf"(?:(?:twenty|thirty)[\s-](?:{'|'.join(_ORD_ONES)})|twentieth|thirtieth|{'|'.join(_ORD_TEENS)}"
    rf"|{'|'.join(_ORD_ONES)}|\d{{1,2}}(?:st|nd|rd|th)?)"
)
MONTH = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
         r"sept?(?:ember)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?")
#: Top-level domains seen in e-mail and web addresses read out ("gmail dot com", "nhs dot uk").
TLD = r"(?:com|org|net|edu|gov|mil|int|info|biz|io|co|me|us|uk|ca|au|nz|ie|de|fr|es|it|nl|in|health|app|dev)"

#: Number words as a set (for the vocabulary: they are never names).
NUMBER_WORDS = frozenset({
    "zero", "oh", "nought", *_ONES, *_TEENS, *_TENS, "hundred", "thousand", "double", "triple",
    *_ORD_ONES, *_ORD_TEENS, "twentieth", "thirtieth",
})
