"""``limits.allowed_regions`` (or the older ``allowed_country_codes``): where SMS may go.

Regions, not calling codes (security requirement 28): +1 is also Jamaica and 22 other regions,
+44 also Jersey, Guernsey and the Isle of Man, whose premium-rate ranges are what SMS pumping
targets. A calling code is accepted only where it means one region.
"""

from __future__ import annotations

from typing import Annotated, Any

import phonenumbers
from pydantic import (
    AfterValidator,
    BeforeValidator,
    StrictStr,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)

from .types import invalid, problems, raise_any

# Unless the file says otherwise: the US and Canada, and the larger European and Oceanian markets.
# A shop selling elsewhere lists its own (or "*" for every region, at its own risk).
DEFAULT_ALLOWED_REGIONS = (
    *("US", "CA", "NL", "BE", "FR", "ES", "IT", "CH", "AT", "GB"),
    *("DK", "SE", "NO", "DE", "AU", "NZ", "PT", "IE", "FI"),
)
# Codes people write for a region that ISO 3166-1 spells otherwise.
_REGION_HINTS = {"UK": "; the United Kingdom is GB", "EL": "; Greece is GR", "KO": "; Kosovo is XK"}


def _no_booleans(value: Any) -> Any:
    """YAML 1.1 reads an unquoted NO (Norway) as false: say so rather than "expected a string"."""
    if isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, bool):
                raise problems(
                    [
                        (
                            f"[{i}]",
                            f'got {str(item).lower()}, not a region: quote the codes, e.g. ["NO"] '
                            "(YAML reads an unquoted NO as false)",
                        )
                    ]
                )
    return value


def _regions(items: tuple[str, ...]) -> tuple[str, ...]:
    if not items:
        raise invalid('needs at least one region (or "*" for every region)')
    regions: list[str] = []
    found: list[tuple[str, str]] = []
    for i, item in enumerate(items):
        region = item.strip().upper()
        if region == "*":
            return ("*",)
        if region not in phonenumbers.SUPPORTED_REGIONS:
            hint = _REGION_HINTS.get(region, "")
            known = "(ISO 3166-1 alpha-2, e.g. US, GB, DE)"
            found.append((f"[{i}]", f"{item!r} is not a region phonenumbers knows {known}{hint}"))
        elif region not in regions:
            regions.append(region)
    raise_any(found)
    return tuple(regions)


def _given_or_default(value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
    """Not given: the regions of ``allowed_country_codes`` when that is given, else the default."""
    if value is not None:
        return handler(value)
    return info.data.get("allowed_country_codes") or DEFAULT_ALLOWED_REGIONS


def _codes_as_text(value: Any) -> Any:
    if isinstance(value, list):
        return [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
    return value


def _code_regions(items: tuple[str, ...]) -> tuple[str, ...]:
    """Each calling code as its one region; a code shared by several regions is refused: +1 would
    let Jamaica through for a shop that means the US and Canada."""
    if not items:
        raise invalid('needs at least one calling code (or "*" for every country)')
    regions: list[str] = []
    found: list[tuple[str, str]] = []
    for i, item in enumerate(items):
        if item.strip() == "*":
            return ("*",)
        problem = _code_problem(item, regions)
        if problem:
            found.append((f"[{i}]", problem))
    raise_any(found)
    return tuple(regions)


def _code_problem(item: str, regions: list[str]) -> str | None:
    code = item.strip().lstrip("+")
    if not (code.isdigit() and 1 <= len(code) <= 3):
        return f'{item!r} is not a country calling code (1 to 3 digits, or "*")'
    # Non-geographic codes (+800, +882 …) belong to region "001", where no SMS goes.
    shared = [
        r
        for r in phonenumbers.region_codes_for_country_code(int(code))
        if r in phonenumbers.SUPPORTED_REGIONS
    ]
    if not shared:
        return f"{item!r} is not a country calling code"
    if len(shared) > 1:
        example = "[US, CA]" if code == "1" else f"[{shared[0]}]"
        return (
            f"+{code} is shared by {len(shared)} regions ({', '.join(shared)}): list the ones you mean "
            f"under limits.allowed_regions instead, e.g. allowed_regions: {example}"
        )
    if shared[0] not in regions:
        regions.append(shared[0])
    return None


Regions = Annotated[
    tuple[StrictStr, ...],
    BeforeValidator(_no_booleans),
    AfterValidator(_regions),
    WrapValidator(_given_or_default),
]
CallingCodes = Annotated[
    tuple[StrictStr, ...], BeforeValidator(_codes_as_text), AfterValidator(_code_regions)
]
