"""HTTP for the remote providers: one pooled client, timeouts, and httpx errors translated once.

The client is created on first use and closed by :meth:`ProviderHttp.close` (at lifespan shutdown,
through ``TwoFactor.close``). Tests and shops may pass their own ``httpx.AsyncClient`` instead, for
instance ``httpx.AsyncClient(transport=httpx.ASGITransport(fake_app))``; a client passed in belongs
to the caller and is not closed here.

Nothing that leaves this module carries a URL: Authy puts the code in the path of its verify URL,
so URLs stay out of exceptions and logs (httpx's own request log included, see ``_HideCodes``).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import httpx

from ..errors import ProviderUnavailable

log = logging.getLogger("tfa_middleware.providers")

#: A provider's answer is a small JSON document; anything larger is not one.
MAX_BODY_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Answer:
    """What came back: the status, the body parsed as a JSON object (None when it is not one)."""

    status: int
    body: Mapping[str, Any] | None
    retry_after: float | None = None

    def error_code(self, key: str) -> str | None:
        """``body[key]`` as a string of digits (Authy sends strings, Twilio numbers), else None."""
        if self.body is None:
            return None
        value = self.body.get(key)
        if isinstance(value, bool) or not isinstance(value, int | str):
            return None
        text = str(value).strip()
        return text if text.isascii() and text.isdigit() else None


class ProviderHttp:
    def __init__(
        self,
        provider: str,
        base_url: str,
        timeout_seconds: float,
        *,
        client: httpx.AsyncClient | None = None,
        auth: tuple[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self.timeout_seconds = timeout_seconds
        self._timeout = httpx.Timeout(timeout_seconds)
        self._client = client
        self._owns_client = client is None
        # Per request, not on the client: httpx shows a client's default headers in its repr.
        self._auth = httpx.BasicAuth(*auth) if auth else None
        self._headers = dict(headers or {})

    def __repr__(self) -> str:
        return f"ProviderHttp({self.provider!r}, {self.base_url!r})"

    def client(self) -> httpx.AsyncClient:
        if self._client is None or (self._owns_client and self._client.is_closed):
            self._client = httpx.AsyncClient(
                timeout=self._timeout,
                limits=httpx.Limits(max_connections=50, max_keepalive_connections=10),
            )
            self._owns_client = True
        return self._client

    async def close(self) -> None:
        if self._owns_client and self._client is not None:
            await self._client.aclose()

    async def request(
        self,
        method: str,
        path: str,
        what: str,
        *,
        params: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
    ) -> Answer:
        """One call; ``path`` is already percent-encoded. ``what`` names it in errors ("authy sms").

        Only a GET is tried a second time, and only when the first try could not connect: then the
        request never reached the provider, so it cannot have been acted on.
        """
        url = self.base_url + path
        try:
            try:
                return await self._once(method, url, params, data)
            except httpx.ConnectError:
                if method != "GET":
                    raise
                log.info("%s: could not connect; trying once more", what)
                return await self._once(method, url, params, data)
        except httpx.ConnectError as exc:
            raise ProviderUnavailable(f"{what}: cannot connect to {self.provider}") from exc
        except (httpx.TimeoutException, TimeoutError) as exc:
            raise ProviderUnavailable(
                f"{what}: no answer from {self.provider} within {self.timeout_seconds:g} s"
            ) from exc
        except (httpx.HTTPError, httpx.StreamError, httpx.InvalidURL) as exc:
            # The class name says what broke (RemoteProtocolError, ReadError…); the message could
            # hold the URL, so it stays in the chained exception only.
            raise ProviderUnavailable(
                f"{what}: the connection to {self.provider} failed ({type(exc).__name__})"
            ) from exc

    async def _once(
        self,
        method: str,
        url: str,
        params: Mapping[str, str] | None,
        data: Mapping[str, str] | None,
    ) -> Answer:
        client = self.client()
        body = bytearray()
        # httpx's timeout bounds each read; this bounds the whole answer (a slow drip included).
        with anyio.fail_after(self.timeout_seconds * 2):
            async with client.stream(
                method,
                url,
                params=params,
                data=data,
                headers=self._headers,
                auth=self._auth if self._auth is not None else httpx.USE_CLIENT_DEFAULT,
                timeout=self._timeout,
                follow_redirects=False,  # even on a client passed in: the key must not travel on
            ) as response:
                async for chunk in response.aiter_bytes():
                    body.extend(chunk)
                    if len(body) > MAX_BODY_BYTES:
                        break
                status = response.status_code
                retry_after = _seconds(response.headers.get("retry-after"))
        return Answer(status, _json_object(bytes(body)), retry_after)


def _json_object(raw: bytes) -> Mapping[str, Any] | None:
    if not raw or len(raw) > MAX_BODY_BYTES:
        return None
    try:
        parsed = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        return None
    return parsed if isinstance(parsed, dict) else None


def _seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None  # an HTTP date: not worth parsing for a hint
    return seconds if 0 <= seconds <= 24 * 3600 else None


class _HideCodes(logging.Filter):
    """httpx logs every request's URL at INFO; an Authy verify URL holds the code. Mask it."""

    _VERIFY = re.compile(r"(/verify/)[^/?#\s]+")
    _KEY = re.compile(r"((?:api_key|Code)=)[^&\s\"]+", re.IGNORECASE)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args and isinstance(record.args, tuple):
            record.args = tuple(self._mask(arg) for arg in record.args)
        return True

    def _mask(self, arg: object) -> object:
        if isinstance(arg, httpx.URL | str):
            text = str(arg)
            masked = self._KEY.sub(r"\1***", self._VERIFY.sub(r"\1***", text))
            return masked if masked != text else arg
        return arg


logging.getLogger("httpx").addFilter(_HideCodes())
