"""Reading a form POST without trusting it: a size cap before parsing, strict UTF-8, one value a field."""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.types import Receive, Scope

from .asgi import header
from .errors import FormTooLarge as FormTooLarge  # its old home: still importable from here
from .errors import InvalidInput
from .i18n import N_

MAX_FIELDS = 20


async def read_form(scope: Scope, receive: Receive, max_bytes: int) -> dict[str, str]:
    """The urlencoded body as a dict; raise FormTooLarge or InvalidInput with a clear message."""
    content_type = (header(scope, b"content-type") or "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise InvalidInput(N_("This page accepts only its own form."))
    length = header(scope, b"content-length")
    if length is not None and (not length.isdigit() or int(length) > max_bytes):
        raise FormTooLarge(N_("The form is too large."))
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise InvalidInput(N_("The request was interrupted."))
        body += message.get("body", b"")
        if len(body) > max_bytes:
            raise FormTooLarge(N_("The form is too large."))
        if not message.get("more_body", False):
            break
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=False,
            max_num_fields=MAX_FIELDS,
            errors="strict",
        )
    except (UnicodeDecodeError, ValueError):
        raise InvalidInput(N_("The form could not be read.")) from None
    form: dict[str, str] = {}
    for key, value in pairs:
        if key in form:
            raise InvalidInput(N_("The form could not be read."))
        form[key] = value
    return form
