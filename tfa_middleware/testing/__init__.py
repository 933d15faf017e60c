"""Fakes of the code providers, for tests and for trying production mode without a real account.

``FakeAuthy`` and ``FakeTwilioVerify`` are ASGI apps that answer as the real APIs do, keep the
codes they "sent" in ``outbox``, log every request in ``requests``, and misbehave on request
through ``faults`` (latency, 5xx, 429, garbage, a dropped connection, any canned answer).
Use them in process (``httpx.AsyncClient(transport=httpx.ASGITransport(fake))``) or over real
loopback HTTP (``with serve(fake) as url: ...``), or from the shell::

    tfa-middleware fake-provider authy --port 8089
"""

from __future__ import annotations

from .fake_api import DroppedConnection, Faults, RecordedRequest, SentCode
from .fake_authy import FAKE_AUTHY_API_KEY, FakeAuthy
from .fake_twilio_verify import FAKE_ACCOUNT_SID, FAKE_AUTH_TOKEN, FAKE_SERVICE_SID, FakeTwilioVerify
from .server import serve

__all__ = [
    "FAKE_ACCOUNT_SID",
    "FAKE_AUTHY_API_KEY",
    "FAKE_AUTH_TOKEN",
    "FAKE_SERVICE_SID",
    "DroppedConnection",
    "FakeAuthy",
    "FakeTwilioVerify",
    "Faults",
    "RecordedRequest",
    "SentCode",
    "serve",
]
