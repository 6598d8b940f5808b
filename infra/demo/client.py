"""The few calls of our API the demo makes: a token, the room's session, its transcript."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, Final

from turnlog.infra.stack.errors import StackError

POLL_INTERVAL: Final = 0.5


class ApiCallError(StackError):
    """The API refused a call or could not be reached; the message has its status and reason."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class IssuedToken:
    token: str
    livekit_url: str
    room: str
    identity: str


class ApiClient:
    """A bearer-key client of our API (JSON in, JSON out)."""

    def __init__(self, base_url: str, key: str, *, timeout: float = 10.0) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"the API URL must be http(s)://, not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._key = key
        self.timeout = timeout

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - http(s) checked in __init__
            self.base_url + path, data=data, method=method,
            headers={"Authorization": f"Bearer {self._key}", "Content-Type": "application/json"},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")[:500]
            raise ApiCallError(
                f"{method} {path}: HTTP {error.code} {detail}", status=error.code
            ) from None
        except (urllib.error.URLError, OSError) as error:
            raise ApiCallError(f"{method} {path}: cannot reach {self.base_url}: {error}") from None

    def token(self, *, room: str, identity: str, name: str | None = None) -> IssuedToken:
        body: dict[str, Any] = {"room": room, "identity": identity}
        if name:
            body["name"] = name
        out = self._call("POST", "/v1/tokens", body)
        return IssuedToken(out["token"], out["livekit_url"], out["room"], out["identity"])

    def sessions(self, room: str) -> list[dict[str, Any]]:
        out = self._call("GET", "/v1/sessions?" + urllib.parse.urlencode({"room": room}))
        return list(out["items"])

    def transcript(self, session_id: str) -> list[dict[str, Any]]:
        turns: list[dict[str, Any]] = []
        after = 0
        while True:
            quoted = urllib.parse.quote(session_id, safe="")
            out = self._call("GET", f"/v1/sessions/{quoted}/transcript?after_sequence={after}")
            turns.extend(out["turns"])
            if out.get("next_after") is None:
                return turns
            after = int(out["next_after"])

    def closed_session(self, room: str, *, user_turns: int, timeout: float) -> dict[str, Any]:
        """Wait until the room's session is closed in the read models with at least
        `user_turns` user turns; return its summary."""
        deadline = time.monotonic() + timeout
        seen: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            items = self.sessions(room)
            if items:
                seen = items[0]
                if seen.get("status") != "active" and seen.get("user_turns", 0) >= user_turns:
                    return seen
            time.sleep(POLL_INTERVAL)
        raise ApiCallError(
            f"the session of room {room} did not reach the read models closed with "
            f"{user_turns} user turns within {timeout:.0f} s (last seen: {seen})"
        )

    def accepts(self) -> bool:
        """Whether the key is accepted (False on 401/403)."""
        try:
            self.sessions("turnlog-key-check")
        except ApiCallError as error:
            if error.status in (401, 403):
                return False
            raise
        return True
