"""The factors beside the phone: authenticator apps (``totp.py``), recovery codes
(``recovery.py``), remembered browsers (``browsers.py``), the keys their secrets are stored under
(``keys.py``) and the verify lockout they share with the texted codes (``attempts.py``).
``Factors`` (``service.py``) is their face, reached as ``TwoFactor.factors``.
"""
