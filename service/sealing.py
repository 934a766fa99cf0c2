"""Provider credentials sealed at rest, so that a database dump or backup holds none.

The key is SMSGW_SECRET_KEY (a Fernet key: 32 random bytes, URL-safe base64), or
else a key file in the data folder, made on first start and readable by its owner
only. Processes that share a database must share the key: on PostgreSQL across
machines, give them all the same SMSGW_SECRET_KEY.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from service.errors import SettingsError

_PREFIX = "fernet:"
KEY_FILE = "secret.key"


class Sealer:
    def __init__(self, key: bytes) -> None:
        try:
            self._fernet = Fernet(key)
        except ValueError as exc:
            raise SettingsError(
                "SMSGW_SECRET_KEY must be a Fernet key: 32 bytes in URL-safe base64"
            ) from exc

    def seal(self, credentials: Mapping[str, str]) -> str:
        plain = json.dumps(dict(credentials), separators=(",", ":")).encode()
        return _PREFIX + self._fernet.encrypt(plain).decode()

    def unseal(self, stored: str) -> dict[str, str]:
        # Rows written before sealing hold plain JSON; they are sealed when next saved.
        if not stored.startswith(_PREFIX):
            plain: dict[str, str] = json.loads(stored)
            return plain
        try:
            opened: dict[str, str] = json.loads(self._fernet.decrypt(stored[len(_PREFIX) :]))
        except InvalidToken as exc:
            raise SettingsError(
                "the stored credentials were sealed with another key: give this process "
                "the SMSGW_SECRET_KEY (or data folder secret.key) the others use"
            ) from exc
        return opened


def load_key(data_dir: Path, environ: Mapping[str, str] | None = None) -> bytes:
    env = os.environ if environ is None else environ
    given = env.get("SMSGW_SECRET_KEY", "").strip()
    if given:
        return given.encode()
    path = data_dir / KEY_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        draft = data_dir / f".{KEY_FILE}.{os.getpid()}"
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as key_file:
            key_file.write(Fernet.generate_key())
        # A link appears whole or not at all: when two processes start at once, one
        # key wins and both read it.
        with contextlib.suppress(FileExistsError):
            os.link(draft, path)
        draft.unlink()
    return path.read_bytes().strip()
