"""Settings → provider, at the edge: the core never looks a provider up by name.

``production_mode: false`` always gives the sandbox, whatever ``name`` says, so that a test
setup can never text anyone; ``true`` gives the named remote provider (the settings refuse the
sandbox in production mode).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from ..i18n import Languages
from ..settings import Settings
from ..store import Store
from .authy import AuthyProvider
from .base import Provider
from .sandbox import SandboxProvider
from .twilio_verify import TwilioVerifyProvider

RemoteProvider = AuthyProvider | TwilioVerifyProvider


def build_provider(
    settings: Settings,
    store: Store,
    clock: Callable[[], float] = time.time,
    *,
    client: httpx.AsyncClient | None = None,
) -> Provider:
    """The provider the settings ask for. ``client`` replaces the remote providers' own pooled
    httpx client (tests pass one whose transport is a fake server)."""
    remote = remote_provider(settings, client=client)
    if remote is not None:
        return remote
    return SandboxProvider(
        store,
        settings.provider,
        settings.secret_keys[-1],
        clock=clock,
        site_name=settings.branding.title or "",
        languages=Languages(settings.templates_dir),
    )


def remote_provider(settings: Settings, *, client: httpx.AsyncClient | None = None) -> RemoteProvider | None:
    """The Authy or Twilio Verify provider in production mode, else None (the sandbox's turn)."""
    provider = settings.provider
    if not provider.production_mode:
        return None
    if provider.name == "authy":
        # The pseudonymous emails are keyed with the newest signing key.
        return AuthyProvider(provider, settings.secret_keys[-1], client=client)
    if provider.name == "twilio_verify":
        return TwilioVerifyProvider(provider, client=client)
    raise ValueError(f"provider {provider.name!r} cannot run in production mode")
