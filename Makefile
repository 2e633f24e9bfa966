# Two commands set everything up on a fresh machine with Python 3.11: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test faults lint format clean bench bench-peers screenshots

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

# Fresh secrets for this checkout only; git ignores the file.
.env: | $(VENV)/.installed
	$(PY) -c "import secrets; from cryptography.fernet import Fernet; \
	print(f'SECRET_KEY={secrets.token_urlsafe(50)}'); \
	print(f'FIELD_ENCRYPTION_KEY={Fernet.generate_key().decode()}')" > $@
	@echo "Wrote .env with a new SECRET_KEY and FIELD_ENCRYPTION_KEY (keep it: it decrypts the stored API keys)."

# Without CELERY_BROKER_URL in the environment, run a private Redis on a unix socket in .run/.
ifeq ($(origin CELERY_BROKER_URL), undefined)
run: export CELERY_BROKER_URL := redis+socket://$(CURDIR)/.run/redis.sock
run: PROCESSES := redis web worker beat sandbox
else
run: PROCESSES := web worker beat sandbox
endif
run: export DEBUG := true
run: $(VENV)/.installed .env
	@# beat keeps its schedule in .run/, which the private Redis would otherwise have been the one to make
	mkdir -p .run
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput -v0
	$(PY) manage.py seed_demo
	@# Ctrl-C stops every process through honcho; the trap makes that a clean exit, not a make error.
	@trap 'exit 0' INT; $(VENV)/bin/honcho --env /dev/null start $(PROCESSES) || test $$? -eq 130

test: $(VENV)/.installed
	$(PY) -m pytest

# Outages under traffic with real processes: a Redis and a PostgreSQL cluster of the tests' own, restarted
# and crashed (a few minutes; `.ci/run` runs it after `make test`).
faults: $(VENV)/.installed
	$(PY) -m pytest -m faults tests/faults

# Retake the README's screenshots (docs/screenshots/) with the browser tests.
screenshots: $(VENV)/.installed
	UPDATE_SCREENSHOTS=1 $(PY) -m pytest tests/browser -q

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) .run .pytest_cache .ruff_cache

# Benchmarks against the local PostgreSQL and Redis (DATABASE_URL / CELERY_BROKER_URL override them).
# QUICK=1 runs smaller counts in under two minutes; CI runs that.
bench: $(VENV)/.installed
	$(PY) -m bench $(if $(QUICK),--quick)

# The relay against LiteLLM's proxy (not in CI): LiteLLM goes into a virtualenv of its own, never the project's.
PEERS_VENV := .run/peers-venv
$(PEERS_VENV)/.installed: bench/requirements-peers.txt
	test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install -q --disable-pip-version-check -r bench/requirements-peers.txt
	touch $@

bench-peers: $(VENV)/.installed $(PEERS_VENV)/.installed
	$(PY) -m bench --peers $(if $(QUICK),--quick)
