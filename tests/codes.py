"""The one-time codes as a test handles them: the code in a sandbox text, the newest one a user
was sent, and a well-formed code that is certainly wrong."""

from __future__ import annotations

import re

from tfa_middleware.store import Store
from tfa_middleware.store import outbox as outbox_rows

# Codes are 6 to 10 digits (the sandbox sends 6); no other run of that many digits is in a text.
_CODE = re.compile(r"\b(\d{6,10})\b")


def code_in(text: str) -> str:
    """The code in the body of a sandbox text message."""
    match = _CODE.search(text)
    assert match, f"no code in {text!r}"
    return match.group(1)


async def latest_code(store: Store, user_id: str | None = None) -> str:
    """The code in the newest sandbox text (to ``user_id``, when given) in the store's outbox."""
    messages = [m for m in await outbox_rows.latest(store, 50) if user_id is None or m.user_id == user_id]
    assert messages, f"no text message to {user_id or 'anyone'} in the outbox"
    return code_in(messages[-1].body)


def other_code(code: str) -> str:
    """A well-formed code of the same length that is certainly not ``code``."""
    return f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"
