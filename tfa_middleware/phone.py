"""Phone numbers: a country calling code and a national number in, E.164 out, masked for display."""

from __future__ import annotations

import re

import phonenumbers
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, NumberParseException, PhoneNumberType

from .errors import InvalidPhoneNumber
from .i18n import N_

_SEPARATORS = re.compile(r"[\s().\-]")
_MOBILE_TYPES = {PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE}


def normalise(country_code: str | int, number: str) -> str:
    """``("44", "07700 900123")`` → ``"+447700900123"``; raise InvalidPhoneNumber with a clear message."""
    cc, national = _typed(country_code, number)
    region = phonenumbers.region_code_for_country_code(int(cc))
    if region == "ZZ":
        raise InvalidPhoneNumber(N_("+%(cc)s is not a country calling code we know."), cc=cc)
    try:
        parsed = phonenumbers.parse(national, region)
    except NumberParseException:
        raise InvalidPhoneNumber(N_("That is not a phone number we can read.")) from None
    _check_number(parsed, cc)
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _typed(country_code: str | int, number: str) -> tuple[str, str]:
    """The calling code's digits and the national number's digits, as typed; the typing checked."""
    cc = str(country_code).strip().lstrip("+")
    if cc.startswith("00"):
        cc = cc[2:]
    if not cc.isdigit() or not 1 <= len(cc) <= 3:
        raise InvalidPhoneNumber(N_("The country code is 1 to 3 digits, for example +1 or +44."))
    national = _SEPARATORS.sub("", str(number or ""))
    if not national:
        raise InvalidPhoneNumber(N_("Enter your mobile phone number."))
    if not national.isdigit():
        raise InvalidPhoneNumber(N_("The phone number may contain only digits, spaces and dashes."))
    if len(national) > 15:
        raise InvalidPhoneNumber(N_("That phone number is too long."))
    return cc, national


def _check_number(parsed: phonenumbers.PhoneNumber, cc: str) -> None:
    """The parsed number belongs to ``cc``, is possible, valid, and a mobile."""
    if parsed.country_code != int(cc):
        # The number was typed in international form for another country.
        raise InvalidPhoneNumber(N_("That number does not belong to country code +%(cc)s."), cc=cc)
    reason = phonenumbers.is_possible_number_with_reason(parsed)
    if reason == phonenumbers.ValidationResult.TOO_SHORT:
        raise InvalidPhoneNumber(N_("That phone number is too short."))
    if reason == phonenumbers.ValidationResult.TOO_LONG:
        raise InvalidPhoneNumber(N_("That phone number is too long."))
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidPhoneNumber(N_("That is not a valid phone number for country code +%(cc)s."), cc=cc)
    if phonenumbers.number_type(parsed) not in _MOBILE_TYPES:
        raise InvalidPhoneNumber(N_("Codes are sent by text message: please give a mobile number."))


def mask(e164: str | None) -> str:
    """``"+447700900123"`` → ``"+44 ••• ••• 0123"``: the country code and the last four digits only."""
    if not e164:
        return ""
    cc = _calling_code(e164)
    return f"+{cc} ••• ••• {e164[-4:]}" if cc else f"••• ••• {e164[-4:]}"


def _calling_code(e164: str) -> str:
    """The calling code of an E.164 string, read off its first digits: calling codes are
    prefix-free (no code is the start of another), so the first one phonenumbers knows is it.
    Several per send and per page: parsing the whole number costs about 100 times as much."""
    digits = e164[1:] if e164.startswith("+") else ""
    if not digits[:1].isdigit() or digits[0] == "0":  # no calling code starts with 0
        return ""
    for length in (1, 2, 3):
        code = digits[:length]
        if len(code) == length and code.isdigit() and int(code) in COUNTRY_CODE_TO_REGION_CODE:
            return code
    return ""


def national_digits(e164: str) -> str:
    """The national significant number of an E.164 string (what follows the calling code)."""
    return str(phonenumbers.national_significant_number(phonenumbers.parse(e164)))
