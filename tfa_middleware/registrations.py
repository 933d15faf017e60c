"""The provider's users: a phone registered with the provider (Authy) before a code goes to it,
registered again once when the provider forgot it, and every stored id forgotten when the
provider credentials change (another account knows none of them)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TypeVar

from .errors import ProviderUserNotFound
from .providers.base import Provider, Purpose, Target
from .store import Store
from .store import enrollments as enrollment_rows
from .store import meta as meta_rows

log = logging.getLogger("tfa_middleware")
T = TypeVar("T")
FINGERPRINT_KEY = "provider_fingerprint"


class Registrations:
    def __init__(self, provider: Provider, store: Store, clock: Callable[[], float]) -> None:
        self.provider = provider
        self.store = store
        self.clock = clock
        self._fingerprint_checked = False

    async def call(self, target: Target, action: Callable[[Target], Awaitable[T]]) -> T:
        """Run a provider call with a registered user, registering again once if the provider
        has forgotten the id we stored (Authy answers 60026 for a deleted user)."""
        target = await self._registered(target)
        try:
            return await action(target)
        except ProviderUserNotFound:
            log.warning("provider forgot %s user %s; registering again", target.interface, target.user_id)
            target = await self._registered(replace(target, provider_user_id=None))
            return await action(target)

    async def _registered(self, target: Target) -> Target:
        if not self.provider.needs_registration or target.provider_user_id:
            return target
        provider_user_id = await self.provider.register(target)
        await enrollment_rows.set_provider_ref(
            self.store,
            target.interface,
            target.user_id,
            target.phone,
            confirmed=target.purpose is not Purpose.ENROLL,
            ref=provider_user_id,
            now=self.clock(),
        )
        return replace(target, provider_user_id=provider_user_id)

    async def check_fingerprint(self) -> None:
        """Once per process: a new API key (another account) voids every stored provider id.
        Called before an enrollment is read, so the ids it would use are already cleared."""
        if self._fingerprint_checked or self.provider.fingerprint is None:
            return
        stored = await meta_rows.get(self.store, FINGERPRINT_KEY)
        if stored != self.provider.fingerprint:
            if stored is not None:
                cleared = await enrollment_rows.clear_provider_refs(self.store, self.clock())
                log.warning("the provider credentials changed: %d stored provider user ids cleared", cleared)
            await meta_rows.put(self.store, FINGERPRINT_KEY, self.provider.fingerprint)
        self._fingerprint_checked = True
