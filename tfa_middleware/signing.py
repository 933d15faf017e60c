"""itsdangerous's timestamp signer on our clock, so that expiry follows the injected time in tests
and one notion of "now" decides every age check."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from itsdangerous import TimestampSigner


class ClockedTimestampSigner(TimestampSigner):
    def __init__(self, *args: Any, clock: Callable[[], float], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clock = clock

    def get_timestamp(self) -> int:
        return int(self._clock())
