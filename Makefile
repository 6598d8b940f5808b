# The two commands of a fresh machine:
#   make up    install everything, start the platform (Kafka, PostgreSQL, chDB, LiveKit, and
#              the streams worker, API and agent gateway), then hold a demo voice call and
#              print its transcript; the platform keeps running until `make down`
#   make test  install everything, then run every test against the real stack
.PHONY: install install-test up down status test lint unit

VENV := .venv/bin

install:
	@bash infra/install.sh

install-test:
	@bash infra/install.sh --test

up: install
	@$(VENV)/turnlog up

down:
	@$(VENV)/turnlog down

status:
	@$(VENV)/turnlog status

lint: install
	$(VENV)/ruff check .
	$(VENV)/mypy

unit: install
	$(VENV)/python -m pytest -m unit

test: install-test lint
	$(VENV)/python -m pytest
