# Segment Portal. `make run` serves the portal; `make test` runs every check.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?= -n 2 --durations=15
# Settings default to production-safe (DEBUG off, which needs DJANGO_SECRET_KEY); every
# target here is for development, so it switches DEBUG on unless told otherwise.
export DJANGO_DEBUG ?= 1

.PHONY: run test install lint typecheck pytest migrate demo worker beat bench clean

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $(STAMP)

install: $(STAMP)

migrate: install
	mkdir -p var/staticfiles
	$(BIN)/python manage.py migrate --noinput

demo: migrate
	$(BIN)/python manage.py seed_demo --if-empty
	$(BIN)/python manage.py seed_demo_segments --if-empty
	$(BIN)/python manage.py seed_demo_campaigns --if-empty

run: demo
	@echo
	@echo "  Segment Portal: http://$(HOST):$(PORT)/"
	@echo "  Demo login:     demo / demo-portal-2026"
	@echo
	$(BIN)/python manage.py runserver $(HOST):$(PORT)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy .

# The full Hypothesis profile (every example each property asks for); a bare `pytest` runs
# the quick one. `--durations` lists the slowest tests, to keep the suite well under 10 min.
pytest: install
	HYPOTHESIS_PROFILE=$${HYPOTHESIS_PROFILE:-full} $(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

worker: install
	$(BIN)/celery -A config worker -l info -c 2

beat: install
	$(BIN)/celery -A config beat -l info

bench: install
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) var/db.sqlite3* var/staticfiles
