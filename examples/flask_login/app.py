"""A small Flask shop with Flask-Login: an admin area at /admin, its log-in at /admin/login.

Nothing here knows about the second factor but one line, the wrap of ``app.wsgi_app``: the
middleware reads Flask's own session cookie (``identity: {from: flask_session}`` in config.yaml) and
stops a logged-in admin at its pages until the second factor succeeds. Run it from this folder:
``gunicorn app:app``. Users: alice / alice-password (1), bob / bob-password (2): a demo.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from flask import Flask, redirect, request, url_for
from flask_login import LoginManager, current_user, login_user, logout_user
from markupsafe import escape
from werkzeug.wrappers import Response

from tfa_middleware.wsgi import TwoFactorWSGIMiddleware


@dataclass(frozen=True)
class User:
    """What Flask-Login asks of a user."""

    id: str
    name: str
    password: str
    is_authenticated: bool = True
    is_active: bool = True
    is_anonymous: bool = False

    def get_id(self) -> str:
        return self.id


USERS = {u.id: u for u in (User("1", "alice", "alice-password"), User("2", "bob", "bob-password"))}

app = Flask(__name__)
# The same secret goes into config.yaml as identity.secret_key (both read ${FLASK_SECRET}).
app.config["SECRET_KEY"] = os.environ["FLASK_SECRET"]
login_manager = LoginManager(app)
login_manager.login_view = "login"
login_manager.user_loader(USERS.get)

# The second factor: the one added line (and its import). Wrapping wsgi_app keeps `app` the Flask
# object (Flask's own idiom for WSGI middleware; mypy sees a method replaced).
CONFIG = Path(__file__).with_name("config.yaml")  # found wherever gunicorn is started
app.wsgi_app = TwoFactorWSGIMiddleware.from_yaml(app.wsgi_app, CONFIG)  # type: ignore[method-assign]

FORM = """<!doctype html><title>Log in</title><h1>Shop admin: log in</h1>
<form method="post"><label>Name <input name="name" autocomplete="username"></label>
<label>Password <input name="password" type="password" autocomplete="current-password"></label>
<button>Log in</button></form>"""


@app.route("/admin/login", methods=["GET", "POST"])
def login() -> str | Response:
    if request.method == "POST":
        found = [u for u in USERS.values() if u.name == request.form.get("name")]
        if found and found[0].password == request.form.get("password"):
            login_user(found[0])
            return redirect(url_for("orders"))
    return FORM


@app.get("/admin/logout")
def logout() -> Response:
    logout_user()
    return redirect(url_for("login"))


@app.get("/admin/")
def orders() -> str | Response:
    if not current_user.is_authenticated:  # Flask-Login's login_required, spelled out
        return redirect(url_for("login", next=request.path))
    return f"<!doctype html><title>Orders</title><h1>Orders of {escape(current_user.name)}</h1>" + (
        '<p><a href="/admin/logout">Log out</a></p>'
    )
