"""Virtual API keys: stored as HMAC-SHA256 digests keyed with one secret per installation.

The secret comes from the environment (`$TOKENOMY_KEY_SECRET` by default, at least 32 characters: every
replica of a deployment sets the same one) or, without it, from the state directory (`secret`, mode 0600,
created on first start). A key is shown once, at creation; the database holds only its digest, its team
and a public key id. Lookups hash the presented key and compare digests with `hmac.compare_digest`.
Creating or revoking a key bumps the database's version counter, which every running gateway polls
(gateway/state.py), so a revocation reaches every replica within a poll.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tokenomy.gateway.ledger import Database

KEY_PREFIX = "tk-"
SECRET_FILE = "secret"
SECRET_ENV = "TOKENOMY_KEY_SECRET"
MAX_VERIFIED = 100_000  # valid keys remembered between reloads (a bound, should a deployment have more)


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    team: str
    name: str
    created_s: float
    key_hash: str


def installation_secret(state_dir: Path, env: str | None = SECRET_ENV) -> bytes:
    """The HMAC secret: from $env when set (≥ 32 characters), else the state directory's file (created when missing)."""
    given = os.environ.get(env) if env else None
    if given:
        if len(given) < 32:
            raise ValueError(f"${env}: the key-hashing secret must be at least 32 characters (got {len(given)})")
        return given.encode()
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
    """Create, verify, list and revoke virtual keys; verified keys are looked up in memory by digest.

    `load` reads the active keys from the database (blocking: the gateway calls it from a thread) and swaps
    the map in one assignment, so `verify` on the event loop never waits for the database."""

    def __init__(self, db: Database, state_dir: Path, secret_env: str | None = SECRET_ENV):
        self.db = db
        self.secret = installation_secret(state_dir, secret_env)
        self._by_hash: dict[str, ApiKey] = {}
        self.verified: dict[str, ApiKey] = {}  # presented key → its record: each valid key is hashed once per load
        self.loaded_s = 0.0  # time.monotonic() of the last load
        self.reload_lock = threading.Lock()
        self.on_change: Callable[[], object] | None = None  # after a create or revoke: tell the other replicas now
        self.load()

    @property
    def by_hash(self) -> dict[str, ApiKey]:
        return self._by_hash

    @by_hash.setter
    def by_hash(self, keys: dict[str, ApiKey]) -> None:
        """Swap in the active keys, forgetting every key verified against the old ones (a revoked key stops here)."""
        self._by_hash = keys
        self.verified = {}  # after the swap: a verify racing it (the watcher thread loads) cannot re-remember old keys

    def load(self) -> None:
        """Replace the in-memory keys by the database's active ones."""
        fresh = {}
        for key_id, key_hash, team, name, created_s in self.db.execute(
            "SELECT key_id, key_hash, team, name, created_s FROM api_keys WHERE revoked = 0"
        ):
            fresh[key_hash] = ApiKey(key_id, team, name, created_s, key_hash)
        self.by_hash = fresh
        self.loaded_s = time.monotonic()

    def load_if_older(self, age_s: float) -> bool:
        """Reload unless a load finished less than age_s ago (or one is running); whether it reloaded."""
        if time.monotonic() - self.loaded_s < age_s or not self.reload_lock.acquire(blocking=False):
            return False
        try:
            self.load()
            return True
        finally:
            self.reload_lock.release()

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
        self.db.bump_version()
        self.by_hash = {**self.by_hash, record.key_hash: record}
        self._changed()
        return record, key

    def verify(self, key: str) -> ApiKey | None:
        """The key's record, or None for an unknown or revoked key. A valid key is remembered until the keys are
        next swapped (load, create, revoke), so the HMAC is computed once per key, not once per request; unknown
        keys are not remembered, so presenting many cannot grow memory."""
        verified = self.verified
        record = verified.get(key)
        if record is not None:
            return record
        if not key.startswith(KEY_PREFIX):
            return None
        digest = self.digest(key)
        record = self._by_hash.get(digest)
        if record is None or not hmac.compare_digest(record.key_hash, digest):
            return None
        if verified is self.verified and len(verified) < MAX_VERIFIED:  # not swapped meanwhile
            verified[key] = record
        return record

    def revoke(self, key_id: str) -> bool:
        """Revoke a key in the database (every gateway on it drops the key at its next poll); whether it was active."""
        active = self.db.execute("SELECT COUNT(*) FROM api_keys WHERE key_id = ? AND revoked = 0", (key_id,))
        self.db.execute("UPDATE api_keys SET revoked = 1 WHERE key_id = ?", (key_id,))
        self.db.bump_version()
        self.by_hash = {h: k for h, k in self.by_hash.items() if k.key_id != key_id}
        self._changed()
        return bool(active and active[0][0])

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def list(self) -> list[ApiKey]:
        return sorted(self.by_hash.values(), key=lambda k: k.created_s)


def same_secret(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison of a presented secret (e.g. the admin key) with the expected one."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())
