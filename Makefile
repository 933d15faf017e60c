# The two commands a newcomer needs are `make demo` and `make test`; both set up .venv first.
#
#   make demo    run the demo shop behind the middleware on http://127.0.0.1:$(PORT)
#   make test    ruff, mypy --strict on the package, the tests, the benchmarks and the demo, pytest
#   make lint    ruff and mypy only
#   make bench   the benchmarks (python -m benchmarks)
#   make extract / update / compile   the pages' texts: the template (.pot) from the code and the
#                templates, each language's .po brought up to it, the .mo compiled from the .po
#   make clean   caches, build leftovers and the demo database (keeps .venv)
#   make distclean   clean, and remove .venv too

PY ?= python3
VENV = .venv
PORT ?= 8000
# uvicorn trusts X-Forwarded-For from 127.0.0.1 by default, so anybody on this machine could
# choose the client address the send limits and the audit log see. The demo has no proxy in
# front: it reads the real peer. (tests/test_demo.py runs the demo with these same arguments.)
DEMO_UVICORN_ARGS = --no-proxy-headers

BIN = $(VENV)/bin
# Everything mypy --strict checks: the package and all the code that uses it (examples/ when present).
TYPED = tfa_middleware tests benchmarks demo_app $(wildcard examples)
# The stamp is newer than pyproject.toml exactly when the last install of its dependencies
# finished, so a second `make` installs nothing. It lives inside .venv: removing the venv
# removes the stamp with it.
STAMP = $(VENV)/.installed

# pip's "a new version is available" check costs a request on every call and says nothing useful here.
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.PHONY: setup demo test lint bench clean distclean extract update compile

LOCALE = tfa_middleware/locale
POT = $(LOCALE)/tfa.pot

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@# Python 3.11's bundled pip (23.x) gives up on the dev extras (nested extras of this package
	@# plus fastapi-users' SQLAlchemy < 2.1) although they resolve; pip 24 and newer solve them.
	$(BIN)/python -m pip install --quiet --upgrade 'pip>=24'
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

demo: $(STAMP)
	@echo
	@echo "  Demo shop:   http://127.0.0.1:$(PORT)/"
	@echo "  Accounts (email / password):"
	@echo "    admin@example.com    / admin      admin, has a phone: challenge page"
	@echo "    vendor@example.com   / vendor     admin, no phone: enrollment page"
	@echo "    customer@example.com / customer   customer, has a phone: challenge page"
	@echo "  Admin log-in: http://127.0.0.1:$(PORT)/admin/login   customer log-in: http://127.0.0.1:$(PORT)/login"
	@echo "  Passkeys (browsers refuse them at an IP address): http://localhost:$(PORT)/admin/login"
	@echo "  Nothing is really sent. Read the codes with:"
	@echo "    $(BIN)/tfa-middleware outbox --config demo_app/config.yaml"
	@echo
	@$(BIN)/tfa-middleware check-config demo_app/config.yaml > /dev/null
	$(BIN)/uvicorn --factory demo_app.app:create_app --host 127.0.0.1 --port $(PORT) $(DEMO_UVICORN_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy --strict $(TYPED)

test: lint
	$(BIN)/pytest --durations=15

bench: $(STAMP)
	$(BIN)/python -m benchmarks

# The catalogues (gettext, managed by Babel): extract reads every text the pages show into the
# template; update merges it into each language's .po (a new text arrives untranslated, a removed
# one is dropped, no guessing by fuzzy matching); compile writes the .mo files the package ships.
# tests/test_catalogues.py fails while a .po lags behind the code or a .mo behind its .po.
extract: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg -k N_ -k html --no-location --sort-output --omit-header \
		--add-comments=TRANSLATORS: --width=100 -o $(POT) tfa_middleware

update: extract
	$(BIN)/pybabel update -i $(POT) -d $(LOCALE) -D tfa --no-fuzzy-matching --ignore-obsolete --width=100

compile: $(STAMP)
	$(BIN)/pybabel compile -d $(LOCALE) -D tfa --statistics

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache test-artifacts build dist *.egg-info
	rm -f demo.sqlite3 demo.sqlite3-journal demo.sqlite3-wal demo.sqlite3-shm
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
