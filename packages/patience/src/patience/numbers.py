"""Numbers (and true/false) the user writes in flags, environment variables, config strings.

Python's int() and float() also read the digits of other scripts ("５", "٣"), underscores
("1_000") and surrounding spaces, and float() reads "nan", "inf" and exponents. A number that
looks like something else on screen, or is no number at all, must be refused, not guessed at.
Every number the tools parse from text goes through `whole` or `decimal`; text that holds
numbers among other things (durations, rates, times of day) is checked with
`refuse_foreign_digits`.
"""

from __future__ import annotations

__all__ = ["FALSE_WORDS", "TRUE_WORDS", "boolean", "decimal", "refuse_foreign_digits", "whole"]

_DIGITS = frozenset("0123456789")
# The words for true and false, in flags (--flag=yes), environment variables and files.
TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "off"})


def whole(text: str) -> int:
    """A whole number: an optional sign, then ASCII digits. ValueError says what is wrong."""
    digits = text[1:] if text[:1] in ("+", "-") else text
    if not digits or not _DIGITS.issuperset(digits):
        raise ValueError(_refusal(text, "a whole number"))
    return int(text)


def boolean(text: str) -> bool:
    """true/false, 1/0, yes/no, on/off, in any case. ValueError otherwise."""
    low = text.strip().lower()
    if low in TRUE_WORDS:
        return True
    if low in FALSE_WORDS:
        return False
    raise ValueError(f'expected true or false, got "{text}"')


def decimal(text: str) -> float:
    """A decimal number: an optional sign, ASCII digits with at most one point ("2", "0.5",
    ".5"). No exponent, no "nan" or "inf"."""
    body = text[1:] if text[:1] in ("+", "-") else text
    before, _, after = body.partition(".")
    digits = before + after
    if not digits or not _DIGITS.issuperset(digits):
        raise ValueError(_refusal(text, "a number"))
    return float(text)


def refuse_foreign_digits(text: str, what: str, error: type[ValueError] = ValueError) -> None:
    """Raise `error` when `text` has a digit other than ASCII 0-9 (such as a full-width "５"),
    naming it: such a number looks right on screen, so a bare "not a number" would puzzle."""
    odd = next((c for c in text if c.isdigit() and c not in _DIGITS), None)
    if odd is not None:
        raise error(
            f'"{text}" is not {what}: "{odd}" is not one of the digits 0-9 (type it in ASCII)'
        )


def _refusal(text: str, what: str) -> str:
    refuse_foreign_digits(text, what)
    return f'"{text}" is not {what}'
