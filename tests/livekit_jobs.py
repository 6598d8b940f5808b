"""How the LiveKit server ended an agent job, read from its log ("job ended", with a
status and an error): what an operator counting job failures sees."""

from __future__ import annotations

import json
import time
from pathlib import Path


def job_end_status(log: Path, job_id: str, *, within: float = 30) -> str:
    """`JS_SUCCESS`, or `JS_FAILED <error>`; "no end reported" after `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if "job ended" in line and f'"jobID": "{job_id}"' in line:
                fields = json.loads(line[line.index("{"):])
                return f"{fields['status']} {fields.get('error', '')}".strip()
        time.sleep(0.5)
    return "no end reported"
