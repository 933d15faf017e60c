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

from ..operability import Budget
from ..store.traffic import UNKNOWN_COUNTRY, Traffic
from .kit import when

# The drawing, in SVG units: one slot per hour, two bars in it.
SLOT = 15
BAR = 6
LEFT = 44  # room for the y axis' numbers
TOP = 12
PLOT_HEIGHT = 180
BOTTOM = 44  # room for the hours
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


def _region(code: str) -> str:
    if code == UNKNOWN_COUNTRY:
        return "unknown (sent before regions were recorded)"
    calling = phonenumbers.country_code_for_region(code)
    return f"{code} (+{calling})" if calling else code


def _bars(values: list[int], offset: int, scale: float, base: int) -> str:
    """One series as a path of bars (none for a zero), ``offset`` into each hour's slot."""
    return " ".join(
        f"M{LEFT + n * SLOT + offset} {base}v{-round(v * scale, 1)}h{BAR}v{round(v * scale, 1)}z"
        for n, v in enumerate(values)
        if v
    )


def chart(traffic: Traffic, budget: Budget) -> dict[str, Any]:
    """What ``_traffic.html`` draws and lists."""
    hours = traffic.hours
    verifies = [ok + bad for ok, bad in zip(traffic.verified, traffic.failed, strict=True)]
    top = _nice_top(max([*traffic.sent, *verifies, 0]))
    scale = PLOT_HEIGHT / top
    base = TOP + PLOT_HEIGHT
    rows, ticks = [], []
    for n in range(hours):
        at = traffic.start + n * 3600
        label = f"{time.strftime('%Y-%m-%d %H:00', time.gmtime(at))} UTC"
        rows.append(
            {
                "hour": label,
                "sent": traffic.sent[n],
                "verified": traffic.verified[n],
                "failed": traffic.failed[n],
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
        "y_ticks": [{"y": base - v * scale, "value": v} for v in (0, top // 2, top)],
        "x_ticks": ticks,
        "sent_path": _bars(list(traffic.sent), (SLOT - 2 * BAR) // 2, scale, base),
        "verify_path": _bars(verifies, (SLOT - 2 * BAR) // 2 + BAR, scale, base),
        "rows": rows,
        "total_sent": sum(traffic.sent),
        "total_verified": sum(traffic.verified),
        "total_failed": sum(traffic.failed),
        "from": when(traffic.start),
        "budget": budget,
        "budget_percent": round(100 * budget.day / budget.per_day),
        "budget_width": BUDGET_WIDTH,
        "budget_used_width": round(BUDGET_WIDTH * used / budget.per_day, 1),
        "countries": [{"region": _region(code), "sent": n} for code, n in traffic.countries],
        "countries_since": when(traffic.countries_since),
        "lockouts": [
            {"interface": lk.interface, "user_id": lk.user_id, "at": when(lk.at)} for lk in traffic.lockouts
        ],
    }
