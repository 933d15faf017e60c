"""Signing keys that are public because this project publishes them (security requirement 29).

The demo, the benchmarks and the documentation carry example keys so that they run without
setup. Anyone can read them, so anyone could sign a proof cookie or forge a shop session with
them: with ``provider.production_mode: true`` the settings refuse every one of them, as a
``secret_keys`` item or as an interface's ``identity.secret_key`` (``identity.secret`` for a JWT).

Only SHA-256 digests are kept: the package holds no key text to copy, and the comparison is exact
(a key that merely resembles a demo key is not refused). ``tests/test_public_keys.py`` scans the
project's own example files and fails when one of their keys is missing here, so a new example
key cannot be forgotten. To add one::

    python -c 'import hashlib, sys; print(hashlib.sha256(sys.argv[1].encode()).hexdigest())' KEY
"""

from __future__ import annotations

import hashlib

PUBLIC_KEY_DIGESTS = frozenset(
    {
        # demo_app/config.yaml: the default of ${TFA_SECRET_KEY}
        "f0a78d548633df0d2404d21843362f3d866965d2572dc828690ef27f5053cc66",
        # demo_app/config.yaml and demo_app/shop.py: the default of ${SHOP_SECRET} (DEMO_SHOP_SECRET)
        "2c458786d3ecde44a2e6a4a6bbb3161fac183456c8a4a697408db476e93e1d13",
        # benchmarks/common.py: SECRET, the benchmarks' signing key
        "8bc81b93d2224d439467556c507867a375bcbe52fb7f4e3e395125bf9b38a6d3",
        # benchmarks/common.py: SHOP_SECRET, the benchmark shop's session key
        "e6670513fded601e8058f4110fe22bc321a5791c81857557eb649fcf335885bf",
        # benchmarks/jwt_resolver.py: JWT_SECRET, the benchmark shop's JWT secret
        "999d0014cd0b57471cba882ea9e5d5576e4e5b4e28ad5f05e19e82856c32c461",
        # examples/fastapi_users: the default of ${TFA_SECRET_KEY}
        "ca3420b302fe9bb8609368c344b34767f55798d294d1866cef67bddfe7566518",
        # examples/fastapi_users: the default of ${SHOP_JWT_SECRET}, the shop's JWT secret
        "1a6a67ae85cb8e6d26c919f9a5280eee2361fee7004f13398fe14ff206d8abd2",
        # examples/django_admin/config.yaml: the default of ${TFA_SECRET_KEY}
        "a789f9bdb0335be98aa46728a425b6056f81f83575c0ab892feb6b3d8a8dcd2a",
    }
)


def is_public(key: str) -> bool:
    """True when ``key`` is, exactly, one of the keys published in this project's files."""
    return hashlib.sha256(key.encode()).hexdigest() in PUBLIC_KEY_DIGESTS
