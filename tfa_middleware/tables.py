"""The database tables: one SQLAlchemy ``MetaData`` and every ``Table`` of tfa-middleware.

A leaf: the queries (store/, limits.py), the schema version (schema.py) and the Alembic
migrations all read the tables from here, so none of them has to import another to find them.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)

# The user_id columns' length, and so the longest user id the middleware and the service accept.
MAX_USER_ID_LENGTH = 320  # the longest e-mail address, a common user id

metadata = MetaData()

# The user row: one per user and interface. It holds what is the user's whatever their factors:
# the generation that proofs name, the verify limits' state, the demand to enroll again.
enrollments = Table(
    "tfa_enrollment",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("interface", String(32), nullable=False),
    Column("user_id", String(MAX_USER_ID_LENGTH), nullable=False),
    Column("require_enrollment", Boolean, nullable=False, default=False),
    # Bumped by a phone change or reset: every proof cookie naming an older generation is void.
    # A new row starts at a random 62-bit value, so a user deleted and created again never gets
    # back a generation that a cookie from their earlier life could name.
    Column("generation", BigInteger, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("last_verified_at", Float),
    # Verify limits (limits.py): consecutive failures, the growing delay, the lock, the hourly cap.
    Column("failures", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float, nullable=False, default=0.0),
    Column("locked_until", Float, nullable=False, default=0.0),
    Column("hour_started_at", Float, nullable=False, default=0.0),
    Column("hour_failures", Integer, nullable=False, default=0),
    UniqueConstraint("interface", "user_id", name="uq_tfa_enrollment_user"),
)

# The user's factors, django-otp's devices: each a row of its own, so that a factor is added,
# confirmed, used and removed on its own. ``sms`` (value: the E.164 number; the provider's
# reference: the Authy id): at most one confirmed (the active phone) and one unconfirmed (the
# pending phone, waiting for its code) per user. ``totp`` (value: the secret, encrypted:
# factors/keys.py; counter: the last time step accepted, so a code works once), unconfirmed until
# its first code. ``recovery``: one row per code, value its keyed hash, last_used_at once used.
# ``webauthn``: a passkey or security key (factors/passkeys.py): value the SHA-256 of its credential
# id (what a sign-in looks it up by; unique among passkeys: no credential belongs to two users),
# credential the id itself, its public key and transports (JSON), counter its sign counter.
# Every writer first updates the user row, which serialises the changes of one user (a row lock
# in PostgreSQL, the write lock in SQLite), so the phones stay at most one each without a partial
# unique index.
factors = Table(
    "tfa_factor",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("interface", String(32), nullable=False),
    Column("user_id", String(MAX_USER_ID_LENGTH), nullable=False),
    Column("kind", String(16), nullable=False),  # sms, totp, recovery, webauthn
    Column("value", String(255), nullable=False),
    Column("provider_ref", String(64)),  # the provider's id for it (Authy id), once registered
    Column("confirmed", Boolean, nullable=False),
    # Set by a manager, not by the user: the user may confirm it, not replace it.
    Column("assigned_by_manager", Boolean, nullable=False, default=False, server_default=false()),
    Column("created_at", Float, nullable=False),
    Column("last_used_at", Float),
    # totp: the last time step accepted (replay refused); webauthn: the authenticator's sign counter.
    Column("counter", BigInteger),
    Column("label", String(64)),  # the user's name for it ("work phone")
    Column("credential", Text),  # webauthn: {"id", "public_key", "transports"} (JSON, base64url)
    Index("ix_tfa_factor_user", "interface", "user_id", "kind"),
    Index(
        "uq_tfa_factor_passkey",
        "value",
        unique=True,
        sqlite_where=text("kind = 'webauthn'"),
        postgresql_where=text("kind = 'webauthn'"),
    ),
)

codes = Table(
    "tfa_code",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("interface", String(32), nullable=False),
    Column("user_id", String(MAX_USER_ID_LENGTH), nullable=False),
    Column("purpose", String(16), nullable=False),
    Column("code_hash", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("attempts_left", Integer, nullable=False),
    Column("used_at", Float),
    Index("ix_tfa_code_user", "interface", "user_id", "purpose"),
)

meta = Table(
    "tfa_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

# Every code sent, for the sliding-window send limits: per account, per phone, per client address,
# and in total. Phones are kept as a keyed digest: the limit needs equality, not the number.
sends = Table(
    "tfa_send",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", Float, nullable=False),
    Column("interface", String(32), nullable=False),
    Column("user_id", String(MAX_USER_ID_LENGTH), nullable=False),
    Column("phone_key", String(64), nullable=False),
    Column("ip", String(45)),
    Index("ix_tfa_send_user", "interface", "user_id", "at"),
    Index("ix_tfa_send_phone", "phone_key", "at"),
    Index("ix_tfa_send_ip", "ip", "at"),
    Index("ix_tfa_send_at", "at"),
)

# One row per limit scope (an account, a phone, a client address); a send's transaction updates
# the rows of its scopes first, which serialises concurrent sends that share a scope (row locks in
# PostgreSQL, the write lock in SQLite) and no others.
send_locks = Table(
    "tfa_send_lock",
    metadata,
    Column("scope", String(96), primary_key=True),
    Column("touched_at", Float, nullable=False),
)

# The shop's send budget (limits.py): one row, "all", counting the codes of the current clock hour
# and UTC day; each send takes one unit by a conditional upsert, the last statement before its
# commit, so that this row, the only one every send shares, is locked as briefly as possible.
send_budget = Table(
    "tfa_send_budget",
    metadata,
    Column("scope", String(16), primary_key=True),
    Column("hour_start", Float, nullable=False),
    Column("hour_count", Integer, nullable=False),
    Column("day_start", Float, nullable=False),
    Column("day_count", Integer, nullable=False),
)

outbox = Table(
    "tfa_outbox",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("created_at", Float, nullable=False),
    Column("interface", String(32), nullable=False),
    Column("user_id", String(MAX_USER_ID_LENGTH), nullable=False),
    Column("to_masked", String(32), nullable=False),
    Column("channel", String(8), nullable=False),
    Column("body", Text, nullable=False),
)

events = Table(
    "tfa_event",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", Float, nullable=False),
    Column("interface", String(32), nullable=False),
    Column("user_id", String(MAX_USER_ID_LENGTH), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("ip", String(45)),
    Column("user_agent", String(255)),
    Column("detail", Text, nullable=False, default="{}"),
    Column("country", String(2)),  # a send's destination region (GB), from detail["country"]
    Index("ix_tfa_event_at", "at"),
    Index("ix_tfa_event_user", "interface", "user_id", "at"),
    # The manage page's traffic: counts by kind over a time range, read from the index alone.
    Index("ix_tfa_event_kind_at", "kind", "at", "interface", "country"),
)


# Logins whose proofs the shop ended one by one (TwoFactor.sign_out with a session id): a proof
# carrying one of these session digests that had not seen this revoked_at (Proof.seen) is refused.
# A row is needed only as long as such a proof could live, expires_at; `db purge` removes it then.
revoked_sessions = Table(
    "tfa_revoked_session",
    metadata,
    Column("interface", String(32), primary_key=True),
    Column("user_id", String(MAX_USER_ID_LENGTH), primary_key=True),
    Column("session_digest", String(64), primary_key=True),
    Column("revoked_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Index("ix_tfa_revoked_session_expires", "expires_at"),
)


# Browsers a user chose to remember ("remember this browser"): one row each, so each can be seen
# and revoked on its own. The cookie holds a random token; only its hash is stored. A row counts
# only while the user row's generation is the one it was made at: any bump (phone change, reset,
# sign out everywhere, `users reset`) forgets them all.
remembered_browsers = Table(
    "tfa_remembered_browser",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("interface", String(32), nullable=False),
    Column("user_id", String(MAX_USER_ID_LENGTH), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("generation", BigInteger, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("last_seen_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("label", String(64), nullable=False),  # from the user agent: "Firefox on Linux"
    Column("network", String(64), nullable=False),  # the IP's /24 or /48, not the address
    Index("ix_tfa_remembered_browser_user", "interface", "user_id"),
)


# Issue 17's policy. A manager's exemption of one user: no second factor asked until ``until``
# (at most MAX_EXEMPTION_DAYS ahead, policy.py), with why and by whom; ended early by ``ended_at``.
exemptions = Table(
    "tfa_exemption",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("interface", String(32), nullable=False),
    Column("user_id", String(MAX_USER_ID_LENGTH), nullable=False),
    Column("until", Float, nullable=False),
    Column("reason", String(200), nullable=False),
    Column("created_by", String(MAX_USER_ID_LENGTH)),
    Column("created_at", Float, nullable=False),
    Column("ended_at", Float),
    Index("ix_tfa_exemption_user", "interface", "user_id"),
)

# enroll_grace: {logins: N}: how many times a user without a factor skipped setting one up. One
# conditional upsert counts a skip, so parallel skips never count one twice or pass N.
grace_logins = Table(
    "tfa_grace",
    metadata,
    Column("interface", String(32), primary_key=True),
    Column("user_id", String(MAX_USER_ID_LENGTH), primary_key=True),
    Column("used", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# mode: report: a user who would have been stopped, once per UTC day (the key makes the second
# worker's insert a no-op, and only the insert that wrote the row writes the audit event).
policy_reports = Table(
    "tfa_policy_report",
    metadata,
    Column("interface", String(32), primary_key=True),
    Column("user_id", String(MAX_USER_ID_LENGTH), primary_key=True),
    Column("day", String(10), primary_key=True),  # YYYY-MM-DD, UTC
    Column("kind", String(16), nullable=False),  # challenge, enroll, step_up
    Column("at", Float, nullable=False),
)

# step_up with max_age_seconds 0: the proofs already spent on one such request (a digest of the
# proof's content); a row is needed while the proof could still be fresh enough (policy.py).
step_up_spent = Table(
    "tfa_step_up_spent",
    metadata,
    Column("digest", String(64), primary_key=True),
    Column("interface", String(32), nullable=False),
    Column("user_id", String(MAX_USER_ID_LENGTH), nullable=False),
    Column("spent_at", Float, nullable=False),
    Index("ix_tfa_step_up_spent_at", "spent_at"),
)
