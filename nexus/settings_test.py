"""Settings for the test suite: the production settings with fast password hashing and
no secrets required. Tests still use the real PostgreSQL and Redis named by
DATABASE_URL / REDIS_URL."""

import os

os.environ.setdefault("NEXUS_TESTING", "true")
os.environ.setdefault("LOG_FORMAT", "json")

from nexus.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CACHES["default"]["KEY_PREFIX"] = f"nexus-test-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"  # noqa: F405
