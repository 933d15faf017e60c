"""The masked number: the calling code read off the E.164 string agrees with phonenumbers' parse."""

from __future__ import annotations

import phonenumbers
from hypothesis import given
from hypothesis import strategies as st

from tfa_middleware.phone import mask


def _parsed_code(e164: str) -> str:
    try:
        return str(phonenumbers.parse(e164).country_code)
    except phonenumbers.NumberParseException:
        return ""


def test_every_regions_example_numbers_are_masked_with_their_calling_code() -> None:
    checked = 0
    for region in phonenumbers.SUPPORTED_REGIONS:
        for kind in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE):
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
            assert mask(e164) == f"+{example.country_code} ••• ••• {e164[-4:]}", (region, e164)
            checked += 1
    assert checked > 400


@given(st.from_regex(r"\+[0-9]{4,15}", fullmatch=True))
def test_any_digit_string_gets_the_code_phonenumbers_parses(e164: str) -> None:
    """Where phonenumbers parses the string, the same calling code; where it refuses it (too
    short to be a number: never stored), still only a calling code and the last four digits."""
    code = _parsed_code(e164)
    masked = mask(e164)
    if code:
        assert masked == f"+{code} ••• ••• {e164[-4:]}"
    else:
        assert masked.endswith(f"••• ••• {e164[-4:]}")
        assert len(masked) <= len("+123 ••• ••• 1234")


def test_no_number_and_a_number_without_a_known_code() -> None:
    assert mask(None) == mask("") == ""
    assert mask("+9991234567") == "••• ••• 4567"
