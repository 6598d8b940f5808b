"""API keys from the command line and the function, development mode, and the ways the
service starts (`python -m turnlog.api`, `uvicorn turnlog.api.main:app`)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import httpx
import pytest

from tests.api.conftest import LIVEKIT_KEY, LIVEKIT_SECRET, AppFactory, free_port
from tests.conftest import PgSchema
from turnlog.api.keys import create_key, hash_key, list_keys

pytestmark = pytest.mark.integration

BODY = {"room": "math-room-1", "identity": "student-42"}


def env_for(pg_schema: PgSchema, **extra: str) -> dict[str, str]:
    return {
        **os.environ, "TURNLOG_POSTGRES_DSN": pg_schema.dsn,
        "TURNLOG_POSTGRES_SCHEMA": pg_schema.name, "LIVEKIT_API_KEY": LIVEKIT_KEY,
        "LIVEKIT_API_SECRET": LIVEKIT_SECRET, **extra,
    }  # fmt: skip


def test_keys_are_stored_hashed_and_shown_once(pg_schema: PgSchema) -> None:
    key = create_key(pg_schema.dsn, name="web backend", scopes=["tokens"], schema=pg_schema.name)
    with pg_schema.connect() as conn:
        rows = conn.execute("SELECT name, key_hash, scopes FROM api_keys").fetchall()
    assert rows == [("web backend", hash_key(key), ["tokens"])]
    assert key not in str(rows)


def test_keys_command_line(pg_schema: PgSchema) -> None:
    run = [sys.executable, "-m", "turnlog.api", "keys"]
    made = subprocess.run(
        [*run, "create", "--name", "ops", "--scopes", "read,admin"],
        env=env_for(pg_schema),
        capture_output=True,
        text=True,
        check=True,
    )
    key = made.stdout.strip()
    assert key.startswith("tlk_")
    [stored] = list_keys(pg_schema.dsn, schema=pg_schema.name)
    assert (stored.name, stored.scopes) == ("ops", frozenset({"read", "admin"}))
    listed = subprocess.run([*run, "list"], env=env_for(pg_schema), capture_output=True,
                            text=True, check=True).stdout  # fmt: skip
    assert stored.key_id in listed
    assert key not in listed
    bad = subprocess.run([*run, "create", "--name", "x", "--scopes", "root"],
                         env=env_for(pg_schema), capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 1
    assert "scopes must be a non-empty subset" in bad.stderr
    revoked = subprocess.run([*run, "revoke", stored.key_id], env=env_for(pg_schema))
    assert revoked.returncode == 0
    assert subprocess.run([*run, "revoke", stored.key_id], env=env_for(pg_schema),
                          capture_output=True).returncode == 1  # fmt: skip


def test_dev_mode_prints_a_key_that_works(
    make_client: AppFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    client = make_client(dev_mode=True)
    printed = capsys.readouterr().err
    key = printed.strip().rsplit(" ", 1)[-1]
    assert printed.startswith("Turnlog API development key (scopes tokens, read, admin): tlk_")
    answer = client.post("/v1/tokens", json=BODY, headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 201
    # Without dev mode the API never runs open: no key, no token.
    assert client.post("/v1/tokens", json=BODY).status_code == 401


def test_python_dash_m_api_refuses_missing_settings_by_name(pg_schema: PgSchema) -> None:
    env = env_for(pg_schema)
    del env["LIVEKIT_API_SECRET"]
    env["TURNLOG_POSTGRES_DSN"] = "mysql://root:hunter2@db/x"
    started = subprocess.run([sys.executable, "-m", "turnlog.api"], env=env, capture_output=True,
                             text=True, timeout=60)  # fmt: skip
    assert started.returncode == 2
    assert "LIVEKIT_API_SECRET is not set" in started.stderr
    assert "TURNLOG_POSTGRES_DSN: must be a postgresql:// URL" in started.stderr
    assert "hunter2" not in started.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["-m", "turnlog.api"],
        ["-m", "uvicorn", "turnlog.api.main:app", "--host", "127.0.0.1", "--port", "{port}"],
    ],
)
def test_the_service_starts_as_fastapi_users_expect(
    pg_schema: PgSchema, command: list[str]
) -> None:
    port = free_port(__import__("socket").SOCK_STREAM)
    args = [part.format(port=port) for part in command]
    key = create_key(pg_schema.dsn, name="t", scopes=["tokens"], schema=pg_schema.name)
    process = subprocess.Popen(
        [sys.executable, *args], env=env_for(pg_schema, TURNLOG_API_PORT=str(port)),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        answer = _wait_and_post(f"http://127.0.0.1:{port}", key)
        assert answer.status_code == 201
        assert answer.json()["room"] == "math-room-1"
    finally:
        process.terminate()
        process.wait(timeout=20)


def _wait_and_post(url: str, key: str) -> Any:
    import time

    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    return httpx.post(url + "/v1/tokens", json=BODY, headers={"Authorization": f"Bearer {key}"})


def test_importing_the_entry_module_reads_nothing() -> None:
    code = "import api.main, os; print('ok')"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEKIT_")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, check=True)  # fmt: skip
    assert done.stdout.strip() == "ok"
