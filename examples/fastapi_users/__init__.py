"""A FastAPI shop with fastapi-users' cookie login, protected by tfa-middleware (README.md)."""
