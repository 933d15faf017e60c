"""A FastAPI shop that logs users in with fastapi-users (JWT in a cookie, users in SQLite through
the SQLAlchemy adapter), as fastapi-users' own documentation sets it up; ``/admin/`` is its
members' page. The last line of :func:`create_app` is all tfa-middleware needs, with config.yaml.

    uvicorn --factory examples.fastapi_users.app:create_app
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.responses import HTMLResponse
from fastapi_users import BaseUserManager, FastAPIUsers, UUIDIDMixin, schemas
from fastapi_users.authentication import AuthenticationBackend, CookieTransport, JWTStrategy
from fastapi_users_db_sqlalchemy import SQLAlchemyBaseUserTableUUID, SQLAlchemyUserDatabase
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase
from starlette.types import ASGIApp

from tfa_middleware import TwoFactorMiddleware

HERE = Path(__file__).parent
# The shop's JWT secret: config.yaml reads the same variable. The default is public: set your own.
SECRET = os.environ.get("SHOP_JWT_SECRET", "example-only-fastapi-users-secret-change-me-0123456789")
DATABASE_URL = f"sqlite+aiosqlite:///{os.environ.get('SHOP_DB', './fastapi_users_shop.sqlite3')}"


class Base(DeclarativeBase):
    pass


class User(SQLAlchemyBaseUserTableUUID, Base):
    pass


class UserRead(schemas.BaseUser[uuid.UUID]):
    pass


class UserCreate(schemas.BaseUserCreate):
    pass


class UserManager(UUIDIDMixin, BaseUserManager[User, uuid.UUID]):
    reset_password_token_secret = SECRET
    verification_token_secret = SECRET


def create_app() -> ASGIApp:
    engine = create_async_engine(DATABASE_URL)
    sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def get_user_db() -> AsyncIterator[SQLAlchemyUserDatabase[User, uuid.UUID]]:
        async with sessions() as session:
            yield SQLAlchemyUserDatabase(session, User)

    async def get_user_manager(
        user_db: SQLAlchemyUserDatabase[User, uuid.UUID] = Depends(get_user_db),  # noqa: B008
    ) -> AsyncIterator[UserManager]:
        yield UserManager(user_db)

    def get_jwt_strategy() -> JWTStrategy[User, uuid.UUID]:
        return JWTStrategy(secret=SECRET, lifetime_seconds=3600)

    # Plain http on your own machine; leave cookie_secure at its default (True) behind https.
    transport = CookieTransport(cookie_max_age=3600, cookie_secure=os.environ.get("SHOP_HTTPS") == "1")
    backend = AuthenticationBackend(name="jwt", transport=transport, get_strategy=get_jwt_strategy)
    users = FastAPIUsers[User, uuid.UUID](get_user_manager, [backend])
    current_user = users.current_user(active=True)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
        yield
        await engine.dispose()

    shop = FastAPI(lifespan=lifespan)
    shop.include_router(users.get_auth_router(backend), prefix="/auth/jwt", tags=["auth"])
    shop.include_router(users.get_register_router(UserRead, UserCreate), prefix="/auth", tags=["auth"])

    @shop.get("/admin/", response_class=HTMLResponse)
    async def members_page(user: User = Depends(current_user)) -> str:  # noqa: B008
        return f"<h1>Members only</h1><p>Signed in as {user.email}.</p>"

    return TwoFactorMiddleware.from_yaml(shop, os.environ.get("TFA_CONFIG", HERE / "config.yaml"))
