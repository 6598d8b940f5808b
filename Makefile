# The two commands of a fresh machine:
#   make up    install everything, start the local stack (Kafka, PostgreSQL, chDB), provision
#   make test  install everything, then run every test against the real stack
.PHONY: install up down status test lint unit

VENV := .venv/bin

install:
	@bash infra/install.sh

up: install
	@$(VENV)/turnlog stack up

down:
	@$(VENV)/turnlog stack down

status:
	@$(VENV)/turnlog stack status

lint: install
	$(VENV)/ruff check .
	$(VENV)/mypy

unit: install
	$(VENV)/python -m pytest -m unit

test: install lint
	$(VENV)/python -m pytest
