"""The local key store's key-encryption key (KEK): made once per state folder.

The private half stays in `<state>/keys/kek.pem` (mode 0600), read by the API, the one
service that opens sealed fields. The public half is what agents need: `kek.pub.pem`
beside it, and, for the default stack, a copy where `turnlog.record` looks when
TURNLOG_KEK_PUBLIC_KEY is not set. Losing the private key makes every sealed field of
this stack unreadable, as if every session were erased: back it up like a database.
"""

from __future__ import annotations

import os
from pathlib import Path

from turnlog.schemas.sealing import generate_kek


def kek_paths(state_dir: Path) -> tuple[Path, Path]:
    """(private, public) PEM paths of the stack in `state_dir`."""
    return state_dir / "keys" / "kek.pem", state_dir / "keys" / "kek.pub.pem"


def ensure_kek(state_dir: Path, *, share_with: Path | None = None) -> str:
    """Make the KEK pair if it does not exist; copy the public half to `share_with` (when
    given and different). Returns a one-line summary."""
    private, public = kek_paths(state_dir)
    made = False
    if not private.exists():
        private.parent.mkdir(parents=True, exist_ok=True)
        private_pem, public_pem = generate_kek()
        descriptor = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as out:
            out.write(private_pem)
        public.write_bytes(public_pem)
        made = True
    if share_with is not None:
        pem = public.read_bytes()
        if not share_with.exists() or share_with.read_bytes() != pem:
            share_with.parent.mkdir(parents=True, exist_ok=True)
            share_with.write_bytes(pem)
    return ("made a new KEK in " if made else "KEK in ") + str(private.parent)
