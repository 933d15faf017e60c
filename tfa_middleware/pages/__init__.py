"""Our own pages under each interface's ``pages_path``: the package the middleware calls.

``router.Pages`` picks the page; ``sign_in.SignInPages`` holds the challenge, send, verify, enroll
and logout steps, ``account.AccountPages`` the phone change and the management page; both use
``kit.PageKit`` (templates, texts, forms, the proof cookie) and the service, never each other.
"""

from __future__ import annotations

from .kit import SECURITY_HEADERS, UNAVAILABLE, PageContext
from .router import Pages

__all__ = ["SECURITY_HEADERS", "UNAVAILABLE", "PageContext", "Pages"]
