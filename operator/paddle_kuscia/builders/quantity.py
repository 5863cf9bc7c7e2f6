"""Kubernetes resource quantities: their exact value, and the canonical string Kubernetes stores for them.

Knative's webhook decodes a Service into Go types and writes back what `resource.Quantity` serialises, so a
request of `0.2` CPUs is stored as `200m`. Emitting that canonical form ourselves keeps what we apply equal to
what we read back. The rules are those of k8s.io/apimachinery v0.34.4, pkg/api/resource/quantity.go
(`ParseQuantity`, `CanonicalizeBytes`), amount.go (`AsCanonicalBytes`, `AsCanonicalBase1024Bytes`) and suffix.go.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from functools import lru_cache

_QUANTITY = re.compile(
    r"^([+-]?)([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?$"
)
_DECIMAL_SUFFIX = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BINARY_SUFFIX = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL_BY_EXPONENT = {e: s for s, e in _DECIMAL_SUFFIX.items()}
_BINARY_BY_EXPONENT = {0: "", **{e // 10: s for s, e in _BINARY_SUFFIX.items()}}
_NANO = 10**9
_MAX_BINARY = 2**63 - 1  # ParseQuantity caps a binary-SI value at the largest int64
# Not Kubernetes' limit (it keeps any int32 exponent): ours, so a hostile exponent cannot make us compute 10**1e9.
_MAX_EXPONENT = 1000


class InvalidQuantity(ValueError):
    pass


class Format(StrEnum):
    DECIMAL_SI = "DecimalSI"  # 12M = 12 * 10^6
    BINARY_SI = "BinarySI"  # 12Mi = 12 * 2^20
    DECIMAL_EXPONENT = "DecimalExponent"  # 12e6


@dataclass(frozen=True)
class Quantity:
    """A parsed quantity: its exact value (already rounded up to nano, as Kubernetes stores it) and format."""

    value: Fraction
    format: Format

    def canonical(self) -> str:
        """`Quantity.String()` for a freshly computed value: the largest suffix that keeps an integer mantissa.

        Binary SI is kept only for whole values of at least 1024 (`1.5Gi` -> `1536Mi`); anything else in binary
        SI is written in decimal SI so no precision is lost (`0.5Mi` -> `524288`, `1.1Gi` -> `1181116006400m`).
        """
        if self.value == 0:
            return "0"
        sign = "-" if self.value < 0 else ""
        magnitude = abs(self.value)
        if self.format == Format.BINARY_SI and magnitude >= 1024 and magnitude.denominator == 1:
            mantissa, exponent = int(magnitude), 0
            while mantissa % 1024 == 0:
                mantissa, exponent = mantissa // 1024, exponent + 1
            return f"{sign}{mantissa}{_BINARY_BY_EXPONENT[exponent]}"
        # Every value here is a whole number of nanos: mantissa * 10^exponent with exponent >= -9.
        mantissa, exponent = int(magnitude * _NANO), -9
        while mantissa % 10 == 0:
            mantissa, exponent = mantissa // 10, exponent + 1
        shift = exponent % 3  # down to a multiple of three: 1.1e5 is 110e3
        mantissa, exponent = mantissa * 10**shift, exponent - shift
        if self.format == Format.DECIMAL_EXPONENT or exponent not in _DECIMAL_BY_EXPONENT:
            # Decimal SI ends at E (10^18); larger exponents are written as such. apimachinery v0.34 drops the
            # suffix there ("1000E" -> "1"); later releases fix it this way, and both keep "1e21" as written.
            suffix = f"e{exponent}" if exponent else ""
        else:
            suffix = _DECIMAL_BY_EXPONENT[exponent]
        return f"{sign}{mantissa}{suffix}"


# A fleet repeats a handful of quantities ("1", "2Gi", "500m"); every reconcile parses them again, exactly.
@lru_cache(maxsize=1024)
def parse(value: int | str) -> Quantity:
    """Parse like `resource.ParseQuantity` (surrounding spaces allowed, as its JSON decoder trims them)."""
    text = str(value).strip()
    match = _QUANTITY.match(text)
    if not match:
        raise InvalidQuantity(f"{value!r} is not a valid quantity")
    sign, number, suffix = match.group(1), match.group(2), match.group(3) or ""
    whole, _, fraction = number.partition(".")
    digits = Fraction(int(whole + fraction or "0"), 10 ** len(fraction))
    if suffix in _BINARY_SUFFIX:
        fmt, magnitude = Format.BINARY_SI, digits * 2 ** _BINARY_SUFFIX[suffix]
    else:
        if len(suffix) > 1:  # e3, E-3 (a lone E is exa)
            fmt, exponent = Format.DECIMAL_EXPONENT, int(suffix[1:])
        else:
            fmt, exponent = Format.DECIMAL_SI, _DECIMAL_SUFFIX[suffix]
        if abs(exponent) > _MAX_EXPONENT:
            raise InvalidQuantity(f"{value!r} is not a valid quantity: the exponent is out of range")
        magnitude = digits * Fraction(10) ** exponent
    # Kubernetes rounds a non-zero value up to the next nano ("you asked for some, you get some").
    magnitude = Fraction(math.ceil(magnitude * _NANO), _NANO)
    if fmt == Format.BINARY_SI:
        magnitude = min(magnitude, Fraction(_MAX_BINARY))
        if 0 < magnitude < 1:
            fmt = Format.DECIMAL_SI
    return Quantity(-magnitude if sign == "-" else magnitude, fmt)


def parse_quantity(value: int | str) -> Fraction:
    """The exact value of a quantity, as Kubernetes stores it."""
    return parse(value).value


@lru_cache(maxsize=1024)
def canonical_quantity(value: int | str) -> str:
    """The string Kubernetes serialises `value` as: `0.2` -> `200m`, `1000000` -> `1M`, `0.5Gi` -> `512Mi`."""
    return parse(value).canonical()
