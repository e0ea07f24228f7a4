"""Virtual API keys: stored as HMAC-SHA256 digests keyed with a per-installation secret.

The secret lives in the state directory (`secret`, mode 0600), created on first start. A key is
shown once, at creation; the database holds only its digest, its team and a public key id.
Lookups hash the presented key and compare digests with `hmac.compare_digest`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from tokenomy.gateway.ledger import Database

KEY_PREFIX = "tk-"
SECRET_FILE = "secret"


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    team: str
    name: str
    created_s: float
    key_hash: str


def installation_secret(state_dir: Path) -> bytes:
    """The per-installation HMAC secret, created (32 random bytes, owner-only) when missing."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / SECRET_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        secret = path.read_bytes()
        if len(secret) < 32:
            raise ValueError(f"{path}: the key-hashing secret is shorter than 32 bytes") from None
        return secret
    with os.fdopen(fd, "wb") as fh:
        fh.write(secrets.token_bytes(32))
    return path.read_bytes()


class KeyStore:
    """Create, verify, list and revoke virtual keys; verified keys are cached by digest."""

    def __init__(self, db: Database, state_dir: Path):
        self.db = db
        self.secret = installation_secret(state_dir)
        self.by_hash: dict[str, ApiKey] = {}
        for key_id, key_hash, team, name, created_s in db.execute(
            "SELECT key_id, key_hash, team, name, created_s FROM api_keys WHERE revoked = 0"
        ):
            self.by_hash[key_hash] = ApiKey(key_id, team, name, created_s, key_hash)

    def digest(self, key: str) -> str:
        return hmac.new(self.secret, key.encode(), hashlib.sha256).hexdigest()

    def create(self, team: str, name: str = "") -> tuple[ApiKey, str]:
        """A new key for a team: (its record, the key itself — shown this once)."""
        if not team:
            raise ValueError("a key needs a team")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        record = ApiKey("key_" + secrets.token_hex(6), team, name, time.time(), self.digest(key))
        self.db.execute(
            "INSERT INTO api_keys (key_id, key_hash, team, name, created_s, revoked) VALUES (?, ?, ?, ?, ?, 0)",
            (record.key_id, record.key_hash, team, name, record.created_s),
        )
        self.by_hash[record.key_hash] = record
        return record, key

    def verify(self, key: str) -> ApiKey | None:
        """The key's record, or None for an unknown or revoked key."""
        if not key.startswith(KEY_PREFIX):
            return None
        digest = self.digest(key)
        record = self.by_hash.get(digest)
        if record is None or not hmac.compare_digest(record.key_hash, digest):
            return None
        return record

    def revoke(self, key_id: str) -> bool:
        found = [h for h, k in self.by_hash.items() if k.key_id == key_id]
        self.db.execute("UPDATE api_keys SET revoked = 1 WHERE key_id = ?", (key_id,))
        for h in found:
            del self.by_hash[h]
        return bool(found)

    def list(self) -> list[ApiKey]:
        return sorted(self.by_hash.values(), key=lambda k: k.created_s)


def same_secret(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison of a presented secret (e.g. the admin key) with the expected one."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())
