"""Settings for the test suite: the production settings with fast password hashing and
no secrets required. Tests still use the real PostgreSQL and Redis named by
DATABASE_URL / REDIS_URL."""

import os
import tempfile
import uuid

os.environ.setdefault("NEXUS_TESTING", "true")
os.environ.setdefault("LOG_FORMAT", "json")
# Short retry delays in tests; the production 5 s is asserted as data, not slept through.
os.environ.setdefault("JOB_RETRY_DELAY_SECONDS", "0.2")
# The shared test organisations make far more than 100 requests per run; the rate-limit
# tests give their own organisation the production limit.
os.environ.setdefault("RATE_LIMIT_DEFAULT", "1000000")
os.environ.setdefault("RATE_LIMIT_ANONYMOUS", "1000000")
os.environ.setdefault("RATE_LIMIT_SIGNIN", "1000000")
os.environ.setdefault("RATE_LIMIT_STRIPE_WEBHOOK", "1000000")
# Local stand-in receivers listen on 127.0.0.1 over plain HTTP; the SSRF tests turn the
# protection back on for themselves.
os.environ.setdefault("WEBHOOK_ALLOW_PRIVATE_NETWORKS", "true")
os.environ.setdefault("WEBHOOK_REQUIRE_HTTPS", "false")
os.environ.setdefault("WEBHOOK_RETRY_DELAYS", "0.2,0.4,0.8")
os.environ.setdefault("WEBHOOK_TIMEOUT_SECONDS", "2")
os.environ.setdefault("ETL_RETRY_BASE_DELAY_SECONDS", "0.01")
# Tests resend invitations at once; the cooldown's own tests set it back.
os.environ.setdefault("INVITATION_RESEND_COOLDOWN_SECONDS", "0")
# A queue of this test process's own (each pytest-xdist worker has its own database), shared
# with the Celery worker it starts, so parallel or earlier test runs never hand each other
# tasks. The run id is inherited by xdist workers; the worker id tells them apart.
os.environ.setdefault("CELERY_TEST_RUN", uuid.uuid4().hex[:10])
# Uploaded files of this test run, shared with the worker and web processes it starts.
os.environ.setdefault(
    "MEDIA_ROOT", os.path.join(tempfile.gettempdir(), f"nexus-test-media-{os.environ['CELERY_TEST_RUN']}")
)
_test_queue = os.environ.get("CELERY_TEST_QUEUE") or (
    f"nexus-test-{os.environ['CELERY_TEST_RUN']}-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
)

# Every queue of this test process is named after it (see CELERY_TASK_ROUTES). Set, not
# defaulted: xdist workers inherit the controller's environment, and a prefix inherited from
# it would give every worker the same queues (one process's Celery worker taking another's
# tasks, in a database where their organisations do not exist).
os.environ["CELERY_QUEUE_PREFIX"] = f"{_test_queue}."

from nexus.settings import *  # noqa: E402, F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Cache entries of earlier or parallel runs must never answer this run's requests.
CACHES["default"]["KEY_PREFIX"] = (  # noqa: F405
    f"nexus-test-{os.environ['CELERY_TEST_RUN']}-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
)
# The name the test process and the workers it starts derive their queue names from.
CELERY_TEST_QUEUE = _test_queue
