"""The exceptions of tfa-middleware.

Expected outcomes (a wrong code, a locked account, a send refused by a limit) are values, not
exceptions. Exceptions are for what is broken or refused outright::

    TwoFactorError
    ├── ConfigError              the YAML file or the settings are wrong; lists every problem
    ├── InvalidInput (ValueError) a caller gave a bad value (phone number, interface, user id)
    │   ├── InvalidPhoneNumber
    │   ├── UnknownInterface
    │   ├── EnrollmentNotAllowed the phone is set up and nobody asked for a change
    │   ├── FormTooLarge         a form POST beyond max_form_bytes; it was not read to the end
    │   └── HostilePath          a path percent-encoded more times than any honest client does
    ├── IdentityUnreadable       the resolver cannot tell who is logged in (misplaced middleware,
    │   │                        an identity header from an untrusted peer); the request fails closed
    │   └── UnusableIdentity (ValueError) somebody is logged in, but their id cannot be used
    ├── StoreUnavailable         the database cannot be reached or answered with an error
    │   └── SchemaOutdated       the tables are older than this release: run `db upgrade`
    └── ProviderError            the code provider failed; nobody is let in
        ├── ProviderUnavailable  down, timing out, or answering something we cannot parse
        ├── ProviderMisconfigured bad credentials or settings: an admin has to act
        ├── ProviderRateLimited  the provider asks us to slow down (retry_after_seconds)
        ├── ProviderBlocked      the provider refuses this number (geo permissions, fraud guard)
        └── ProviderUserNotFound the provider forgot our user id; the service registers again
"""

from __future__ import annotations


class TwoFactorError(Exception):
    """Base of every exception raised by tfa-middleware."""


class ConfigError(TwoFactorError):
    """The configuration is invalid. ``problems`` holds one ``key.path: message`` line each."""

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid configuration{where}:\n{lines}")


class InvalidInput(TwoFactorError, ValueError):
    """A value given by a caller (user, shop code or admin) was refused; nothing was changed.

    ``message`` is the sentence with named placeholders (``%(cc)s``) and ``values`` fill them:
    ``str(exc)`` is the English sentence, and the pages look ``message`` up in the reader's
    language before filling it (``PageKit.explain``).
    """

    def __init__(self, message: str = "", /, **values: object) -> None:
        self.message = message
        self.values = values
        super().__init__(message % values if values else message)


class InvalidPhoneNumber(InvalidInput):
    """The country calling code and number do not make a usable mobile number."""


class UnknownInterface(InvalidInput):
    """The interface name is not one of the configured interfaces."""


class EnrollmentNotAllowed(InvalidInput):
    """The user may not (re-)enroll now: the phone is active and no admin asked for it."""


class FormTooLarge(InvalidInput):
    """The body is larger than ``max_form_bytes``; it was not read to the end."""


class HostilePath(InvalidInput):
    """A path percent-encoded more times than any honest client does; it is refused."""


class IdentityUnreadable(TwoFactorError):
    """The identity resolver cannot read its input, so it cannot tell whether anybody is logged in.

    Treating that as "nobody" would hand a logged-in user to the shop without a second factor:
    the request fails closed, and the message (for the operator's log) names the cause. It never
    holds a secret or a header's value.
    """


class UnusableIdentity(IdentityUnreadable, ValueError):
    """The shop has someone logged in, but their id cannot be used; the request fails closed."""


class StoreUnavailable(TwoFactorError):
    """The database could not be used. The request fails closed."""


class SchemaOutdated(StoreUnavailable):
    """The database schema is behind this release; the message names the command to run."""


class ProviderError(TwoFactorError):
    """The code provider could not do what was asked. The request fails closed."""


class ProviderUnavailable(ProviderError):
    """The provider is down, slow or answered something unusable; trying later may work."""


class ProviderMisconfigured(ProviderError):
    """The provider refused our credentials or settings; an administrator has to fix them."""


class ProviderRateLimited(ProviderError):
    """The provider refused for now; ``retry_after_seconds`` when it said how long."""

    def __init__(self, message: str, retry_after_seconds: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class ProviderBlocked(ProviderError):
    """The provider will not deliver to this number (geo permissions, fraud protection)."""


class ProviderUserNotFound(ProviderError):
    """The provider does not know the user id we stored (Authy 60026); register again."""
