"""Quantities are written the way Kubernetes writes them, so what we apply is what we read back."""

from __future__ import annotations

from fractions import Fraction

import pytest

from paddle_kuscia.builders.quantity import Format, InvalidQuantity, canonical_quantity, parse

# From k8s.io/apimachinery v0.34.4, pkg/api/resource/quantity_test.go:
# TestQuantityString (the canonical string, and an alternate spelling that canonicalises to it) ...
QUANTITY_STRING = [
    ("1Gi", "1024Mi"),
    ("300Mi", "307200Ki"),
    ("6Ki", None),
    ("1001Gi", "1025024Mi"),
    ("1Ti", "1024Gi"),
    ("5", "5000m"),
    ("500m", "0.5"),
    ("1G", "1000M"),
    ("1G", "0.001T"),
    ("1m", "1000u"),
    ("80m", None),
    ("1080m", "1.08"),
    ("1080m", "1080000000n"),
    ("300M", None),
    ("1T", None),
    ("1234567M", None),
    ("1234567m", None),
    ("3k", None),
    ("1025", None),
    ("0", None),
    ("1e9", ".001e12"),
    ("1e-3", "0.001e0"),
    ("1e-9", "1000e-12"),
    ("80e-3", None),
    ("300e6", None),
    ("1e12", None),
    ("1e3", None),
    ("3e3", None),
    ("0", "00"),
    ("1n", None),
    ("80n", None),
    ("1080n", None),
    ("1u", None),
    ("80u", None),
    ("1080u", None),
]
# ... TestQuantityParseEmit ...
PARSE_EMIT = [
    ("1Ki", "1Ki"),
    ("1Mi", "1Mi"),
    ("1Gi", "1Gi"),
    ("1024Mi", "1Gi"),
    ("1000M", "1G"),
    (".001Ki", "1024m"),
    (".000001Ki", "1024u"),
    (".000000001Ki", "1024n"),
    (".000000000001Ki", "2n"),
]
# ... and TestQuantityParse: value (mantissa, base-10 exponent) and format after parsing.
D, B, X = Format.DECIMAL_SI, Format.BINARY_SI, Format.DECIMAL_EXPONENT
PARSE = [
    ("0", 0, 0, D),
    ("0Ki", 0, 0, B),
    ("50k", 5, 4, D),
    ("1E", 1, 18, D),
    ("1E-3", 1, -3, X),
    ("100.035k", 100035, 0, D),
    ("0.0005k", 5, -1, D),
    ("0.5e-2", 5, -3, X),
    ("1.3E+6", 13, 5, X),
    ("6.987654321G", 6987654321, 0, D),
    ("1.01E", 101, 16, D),
    ("3.001n", 4, -9, D),  # rounded up to the next nano
    ("1.1E-9", 2, -9, X),
    ("0.0000000005", 1, -9, D),
    ("0.00000012345", 124, -9, D),
    ("12E", 12, 18, D),
    ("100.035Ki", 10243584, -2, B),
    ("0.5Mi", 5 * 1024 * 1024, -1, B),
    ("0.025Ti", 274877906944, -1, B),
    ("0.000000000001Ki", 2, -9, D),  # rounds up, changes format
    (".0001k", 100, -3, D),
    ("1.", 1, 0, D),
    ("1.G", 1, 9, D),
]
INVALID = ["1.1.M", "1+1.0M", "0.1mi", "0.1am", "aoeu", ".5i", "1i", "-3.01i", "-3.01e-", "1K", "1e", ""]


@pytest.mark.parametrize(("canonical", "alternate"), QUANTITY_STRING)
def test_canonical_strings_are_kept_and_alternates_become_them(canonical: str, alternate: str | None) -> None:
    assert canonical_quantity(canonical) == canonical
    if alternate is not None:
        assert canonical_quantity(alternate) == canonical
    if canonical != "0":
        assert canonical_quantity("-" + canonical) == "-" + canonical


@pytest.mark.parametrize(("given", "emitted"), PARSE_EMIT)
def test_parse_then_emit(given: str, emitted: str) -> None:
    assert canonical_quantity(given) == emitted
    assert canonical_quantity("-" + given) == "-" + emitted


@pytest.mark.parametrize(("given", "mantissa", "exponent", "fmt"), PARSE)
def test_parsed_value_is_rounded_up_to_nano_and_keeps_its_format(
    given: str, mantissa: int, exponent: int, fmt: Format
) -> None:
    assert parse(given) == parse("+" + given)
    assert parse(given).value == mantissa * Fraction(10) ** exponent
    assert parse(given).format == fmt


@pytest.mark.parametrize("given", INVALID)
def test_malformed_quantities_are_refused(given: str) -> None:
    with pytest.raises(InvalidQuantity):
        parse(given)


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        # Checked against resource.ParseQuantity + MarshalJSON from k8s.io/apimachinery v0.34.4.
        ("0.2", "200m"),  # ElasticServing's lac sample
        ("0.1", "100m"),
        ("1000m", "1"),
        ("1.5", "1500m"),
        ("1000000", "1M"),
        ("100M", "100M"),
        ("1e3", "1e3"),
        ("1.2e3", "1200"),
        ("1.5Gi", "1536Mi"),
        ("0.5Gi", "512Mi"),
        ("0.5Ki", "512"),  # binary SI below 1024 is written in decimal SI
        ("1.1Gi", "1181116006400m"),  # not whole: decimal SI, no precision lost
        ("9Ei", "9223372036854775807"),  # binary SI is capped at the largest int64
        ("1.01E", "1010P"),
        (2, "2"),
        ("01", "1"),
        ("+1", "1"),
        ("-0", "0"),
        (" 1 ", "1"),  # the JSON decoder trims spaces
    ],
)
def test_values_are_written_as_the_api_server_writes_them(given: int | str, stored: str) -> None:
    assert canonical_quantity(given) == stored


def test_decimal_si_beyond_exa_keeps_its_magnitude() -> None:
    # apimachinery v0.34 writes 1000E as "1" (fixed upstream by falling back to an exponent); "1e21" is kept
    # as written by both, so it is stable either way.
    assert canonical_quantity("1000E") == "1e21"
    assert canonical_quantity("1e21") == "1e21"


def test_canonical_form_is_a_fixed_point() -> None:
    spellings = [a for pair in QUANTITY_STRING for a in pair if a] + [g for g, _ in PARSE_EMIT]
    for given in spellings + [g for g, *_ in PARSE]:
        once = canonical_quantity(given)
        assert canonical_quantity(once) == once
        assert parse(once).value == parse(given).value
