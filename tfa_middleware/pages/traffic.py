"""The manage page's traffic section, drawn on the server: per clock hour of the last 48 the
codes sent and the verifies (right and wrong codes), as an inline SVG (``_traffic.html``): no
script, no chart library, no request elsewhere (the CSP allows none).

Readable without colour: the sends are solid bars, the verifies hatched (an SVG pattern), and
the legend says which is which in words. The same numbers are a table for screen readers; the
SVG itself is one image with a summary. Each series is one ``<path>`` (a bar is ``M x y v -h
h w v h z``): the page stays light (under the 30 KB the browser tests allow) with 96 bars. The
geometry is worked out here, so the template only places what it is given.
"""

from __future__ import annotations

import time
from typing import Any

import phonenumbers
from babel.numbers import format_percent

from ..i18n import N_, Language
from ..operability import Budget
from ..store.traffic import UNKNOWN_COUNTRY, Traffic

# The drawing, in SVG units: one slot per hour, two bars in it.
SLOT = 15
BAR = 6
LEFT = 44  # room for the y axis' numbers
TOP = 12
PLOT_HEIGHT = 180
BOTTOM = 60  # room for the hours, and the legend's two lines (one each: a translation may be long)
BUDGET_WIDTH = 600


def _nice_top(most: int) -> int:
    """The y axis' top: 1, 2 or 5 times a power of ten, at least ``most`` (and at least 4)."""
    top, step = 4, 1
    while top < most:
        for factor in (2, 5, 10):
            if step * factor >= most:
                return max(4, step * factor)
        step *= 10
        top = step
    return top


def _hour_label(at: float) -> str:
    return time.strftime("%H:%M", time.gmtime(at))


UNKNOWN_REGION = N_("unknown (sent before regions were recorded)")


def _region(code: str, lang: Language) -> dict[str, str]:
    """A destination as the reader names it (CLDR's name of the region in their language; the code
    where CLDR has none) and its calling code, which the template keeps left to right."""
    if code == UNKNOWN_COUNTRY:
        return {"name": lang.gettext(UNKNOWN_REGION), "calling": ""}
    calling = phonenumbers.country_code_for_region(code)
    name = lang.locale.territories.get(code, code)
    return {"name": name, "calling": f"+{calling}" if calling else ""}


def _bars(values: list[int], offset: int, scale: float, base: int) -> str:
    """One series as a path of bars (none for a zero), ``offset`` into each hour's slot."""
    return " ".join(
        f"M{LEFT + n * SLOT + offset} {base}v{-round(v * scale, 1)}h{BAR}v{round(v * scale, 1)}z"
        for n, v in enumerate(values)
        if v
    )


def chart(traffic: Traffic, budget: Budget, lang: Language) -> dict[str, Any]:
    """What ``_traffic.html`` draws and lists, its numbers and times as the reader's language
    writes them (the hours of the axis stay ``HH:MM``, UTC, as the legend says)."""
    number = lang.number
    hours = traffic.hours
    verifies = [ok + bad for ok, bad in zip(traffic.verified, traffic.failed, strict=True)]
    top = _nice_top(max([*traffic.sent, *verifies, 0]))
    scale = PLOT_HEIGHT / top
    base = TOP + PLOT_HEIGHT
    rows, ticks = [], []
    for n in range(hours):
        at = traffic.start + n * 3600
        rows.append(
            {
                "hour": lang.when(at),
                "sent": number(traffic.sent[n]),
                "verified": number(traffic.verified[n]),
                "failed": number(traffic.failed[n]),
            }
        )
        if time.gmtime(at).tm_hour % 6 == 0:
            ticks.append({"x": LEFT + n * SLOT + SLOT // 2, "label": _hour_label(at), "day": at % 86400 == 0})
    used = min(budget.day, budget.per_day)
    return {
        "width": LEFT + hours * SLOT + 8,
        "height": TOP + PLOT_HEIGHT + BOTTOM,
        "left": LEFT,
        "top": TOP,
        "base": base,
        "right": LEFT + hours * SLOT,
        "bar": BAR,
        "hours": hours,
        "y_ticks": [{"y": base - v * scale, "value": number(v)} for v in (0, top // 2, top)],
        "x_ticks": ticks,
        "sent_path": _bars(list(traffic.sent), (SLOT - 2 * BAR) // 2, scale, base),
        "verify_path": _bars(verifies, (SLOT - 2 * BAR) // 2 + BAR, scale, base),
        "rows": rows,
        "total_sent": number(sum(traffic.sent)),
        "total_verified": number(sum(traffic.verified)),
        "total_failed": number(sum(traffic.failed)),
        "from": lang.when(traffic.start),
        "budget": budget,
        "budget_numbers": {
            "used": number(budget.day),
            "hour": number(budget.hour),
            "per_hour": number(budget.per_hour),
        },
        "budget_percent": format_percent(budget.day / budget.per_day, locale=lang.locale),
        "budget_width": BUDGET_WIDTH,
        "budget_used_width": round(BUDGET_WIDTH * used / budget.per_day, 1),
        "countries": [{**_region(code, lang), "sent": number(n)} for code, n in traffic.countries],
        "countries_since": lang.when(traffic.countries_since),
        "lockouts": [
            {"interface": lk.interface, "user_id": lk.user_id, "at": lang.when(lk.at)}
            for lk in traffic.lockouts
        ],
    }
