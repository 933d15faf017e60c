"""``tfa-middleware health --config FILE [--online]``: can this configuration serve a sign-in
now? One line per check, exit 0 when every check passes, 1 otherwise (for a deploy script, a
container's health check, a cron job that pages someone):

    ok    database reachable (postgresql)
    ok    schema current (0009)
    ok    provider configured (twilio_verify, production mode)
    FAIL  provider answers: twilio_verify: credentials refused (HTTP 401)

The database is only read (no migration runs, unlike a starting server on SQLite); ``--online``
also asks the provider whether it accepts the credentials (nothing is sent).
"""

from __future__ import annotations

from dataclasses import dataclass

from . import schema
from .errors import ProviderError, StoreUnavailable, TwoFactorError
from .providers.build import remote_provider
from .settings import Settings
from .store import Store


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    said: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.name} ({self.said})"


async def checks(settings: Settings, *, online: bool = False) -> list[Check]:
    """Every check, in order; a check that cannot run because an earlier one failed fails too."""
    store = Store(settings.database_url.reveal(), auto_migrate=False, pool=settings.database_pool)
    found: list[Check] = []
    try:
        dialect = store.engine.dialect.name
        try:
            revision = await store.schema_revision()
            found.append(Check("database reachable", True, dialect))
            current = revision == schema.head()
            said = revision or "no tables"
            if not current:
                said += f"; this release needs {schema.head()}: run `tfa-middleware db upgrade --config FILE`"
            found.append(Check("schema current", current, said))
        except StoreUnavailable as exc:
            found.append(Check("database reachable", False, f"{dialect}: {exc}"))
            found.append(Check("schema current", False, "the database is unreachable"))
    finally:
        await store.close()
    found.append(await _provider_configured(settings))
    if online:
        found.append(await _provider_answers(settings))
    return found


async def _provider_configured(settings: Settings) -> Check:
    provider = settings.provider
    if not provider.production_mode:
        return Check("provider configured", True, "sandbox: production_mode is false, nothing is sent")
    try:
        remote = remote_provider(settings)
    except (ValueError, TwoFactorError) as exc:
        return Check("provider configured", False, str(exc))
    if remote is not None:
        await remote.close()
    return Check("provider configured", True, f"{provider.name}, production mode")


async def _provider_answers(settings: Settings) -> Check:
    try:
        remote = remote_provider(settings)
    except (ValueError, TwoFactorError) as exc:
        return Check("provider answers", False, str(exc))
    if remote is None:
        return Check("provider answers", True, "sandbox: nothing to ask")
    try:
        return Check("provider answers", True, await remote.check_credentials())
    except ProviderError as exc:
        return Check("provider answers", False, str(exc))
    finally:
        await remote.close()


async def health(settings: Settings, *, online: bool = False) -> int:
    found = await checks(settings, online=online)
    for check in found:
        print(check.line())
    return 0 if all(c.ok for c in found) else 1
