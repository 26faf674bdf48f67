"""Decimals as text keys whose byte order is numeric order: exact comparison in any database.

A double loses digits beyond the 16th and SQLite has no exact numeric type, so the quantity
index stores this key instead and compares keys (PostgreSQL with the "C" collation).
"""

from __future__ import annotations

from decimal import Decimal

# Exponents are written offset by this, in six digits: |exponent| < 500,000 (search values are
# bounded at 100,000, stored ones at 308).
_OFFSET = 500_000
# Digits beyond these are dropped (toward zero): a btree entry must stay well under 2,700 bytes.
MAX_DIGITS = 100
_COMPLEMENT = str.maketrans("0123456789", "9876543210")
ZERO = "1"


def order_key(number: Decimal | int) -> str:
    """The key of a finite number: negatives "0…", zero "1", positives "2…"."""
    number = Decimal(number)
    sign, digits, _ = number.as_tuple()
    mantissa = "".join(map(str, digits[:MAX_DIGITS])).rstrip("0")
    if not mantissa:
        return ZERO
    adjusted = number.adjusted()
    if not sign:
        # A larger exponent is a larger number; then the digits decide, a shorter prefix first.
        return f"2{adjusted + _OFFSET:06d}{mantissa}"
    # Negatives reverse both, and "~" (above every digit) ends the digits so that -1.5 sorts
    # above -1.51.
    return f"0{_OFFSET - adjusted:06d}{mantissa.translate(_COMPLEMENT)}~"


def from_key(key: str) -> Decimal:
    """The number an order_key stands for (its digits, without trailing zeros)."""
    if key == ZERO:
        return Decimal(0)
    if key[0] == "2":
        adjusted, mantissa, sign = int(key[1:7]) - _OFFSET, key[7:], 0
    else:
        adjusted, mantissa, sign = _OFFSET - int(key[1:7]), key[7:-1].translate(_COMPLEMENT), 1
    return Decimal((sign, tuple(map(int, mantissa)), adjusted - len(mantissa) + 1))
