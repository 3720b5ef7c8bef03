"""Encryption at rest for secrets we must be able to read back (webhook signing secrets,
data-source API keys). Fernet (AES-128-CBC + HMAC-SHA256) with ENCRYPTION_KEY, or a key
derived from SECRET_KEY when that is unset. Several comma-separated keys can be given: the
first encrypts, all decrypt, so keys rotate without a migration."""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class DecryptionError(ValueError):
    pass


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...], secret_key: str) -> MultiFernet:
    material = list(keys) or [
        base64.urlsafe_b64encode(hashlib.sha256(f"nexus-encryption:{secret_key}".encode()).digest()).decode()
    ]
    return MultiFernet([Fernet(key.encode()) for key in material])


def _current() -> MultiFernet:
    return _fernet(tuple(settings.ENCRYPTION_KEYS), settings.SECRET_KEY)


def encrypt(plaintext: str) -> str:
    return _current().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _current().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise DecryptionError("The stored secret cannot be decrypted with the configured keys.") from exc
