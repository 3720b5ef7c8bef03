"""The Google Cloud deployment files (docs/specs/delivery.md, "Continuous deployment"):
cloudbuild.yaml and ops/cloudrun/*.yaml. Every process gets every variable production
requires; secrets come from Secret Manager only and no file holds one; each process reads
exactly the secrets its code uses (SECRETS_BY_PROCESS), as an account of its own, and
docs/deploy.md grants each account exactly those; every variable named is one the code
reads; each worker pool consumes a queue the project routes to; beat runs exactly once, or
Cloud Scheduler sends its whole schedule instead (one job per entry, at the entry's period
rounded up to whole minutes, all for one audience), never both; the metrics collector
scrapes /metrics of web and every worker with the metrics token, under the job name the
alerts watch; the migrations run before anything is deployed; the build deploys, into every
file, the image it built; and a build submitted by hand uploads no local secret.

Pure file reading (and one `bash` run of the build's render step): no database, no network,
no cloud. Each check returns the problems it finds; `test_each_check_catches_its_mistake`
breaks a copy of the files and sees the check complain, so none of them passes vacuously.
"""

from __future__ import annotations

import ast
import copy
import json
import math
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from django.conf import settings
from django.urls import Resolver404, resolve

ROOT = Path(__file__).resolve().parents[2]
CLOUDRUN = Path("ops") / "cloudrun"
SETTINGS_FILE = ROOT / "nexus" / "settings.py"

# The secrets each process reads, and why: what its own code paths use, nothing more (a
# leaked worker key then exposes only that worker's integrations). Each file gets exactly its
# process's set: one more is over-sharing, one fewer breaks a path. A missing ENCRYPTION_KEYS
# would not even fail loudly where something is encrypted: nexus.crypto falls back to a key
# derived from SECRET_KEY, which no other process would decrypt.
EVERY_PROCESS = {
    "SECRET_KEY": "the settings refuse to start without it outside DEBUG",
    "DATABASE_URL": "every process reads and writes the database",
    "REDIS_URL": "the cache, rate limits and the Celery broker",
    "SENTRY_DSN": "errors reach Sentry from every process",
}
SERVES_METRICS = {"METRICS_TOKEN": "guards its /metrics, which the collector sidecar scrapes"}
SECRETS_BY_PROCESS: dict[str, dict[str, str]] = {
    "web": {
        **EVERY_PROCESS,
        **SERVES_METRICS,
        "ENCRYPTION_KEYS": "encrypts stored webhook and data-source secrets, and idempotent replays of them",
        "STRIPE_SECRET_KEY": "starts Checkout sessions; Stripe's webhook looks up a refund's session",
        "STRIPE_WEBHOOK_SECRET": "verifies the signature of Stripe's webhook calls",
        "GOOGLE_CLIENT_ID": "Google sign-in",
        "GOOGLE_CLIENT_SECRET": "Google sign-in",
        # Web never calls Gemini (jobs run on worker-jobs, audits on worker-audits; a cache
        # hit calls no provider), but job_create and audit_create record the provider as
        # "gemini" only while the key is set (jobs.providers.default_provider_name): without
        # it every job and audit would run locally.
        "GEMINI_API_KEY": "job_create and audit_create pick the provider by it",
    },
    "worker-jobs": {**EVERY_PROCESS, **SERVES_METRICS, "GEMINI_API_KEY": "runs the AI jobs"},
    "worker-webhooks": {
        **EVERY_PROCESS,
        **SERVES_METRICS,
        "ENCRYPTION_KEYS": "decrypts each endpoint's signing secret to sign its deliveries",
        "ANYMAIL_SENDGRID_API_KEY": "sends invitation emails (tenants.send_invitation runs on this queue)",
    },
    "worker-etl": {
        **EVERY_PROCESS,
        **SERVES_METRICS,
        "ENCRYPTION_KEYS": "decrypts data sources' API keys to fetch",
    },
    # An audit's items are in the database (written when it is created) and its charges are
    # ledger rows: no encrypted secret, no Stripe, no upload.
    "worker-audits": {
        **EVERY_PROCESS,
        **SERVES_METRICS,
        "GEMINI_API_KEY": "audits.run_batch evaluates each batch of items",
    },
    # The sweeps, the ETL dispatch and the clean-ups only queue and update rows.
    "worker-periodic": {
        **EVERY_PROCESS,
        **SERVES_METRICS,
        "STRIPE_SECRET_KEY": "billing.reconcile asks Stripe about checkouts left open",
    },
    "beat": EVERY_PROCESS,
    # The migrations (no data migration encrypts or decrypts) and the operator commands
    # (smoke_account empties a rate-limit window in Redis).
    "migrate": EVERY_PROCESS,
}
# Server-held data-source keys (ETL_SOURCE_KEY__<schema>__<name>, added by an operator): web
# checks that a source names one that exists, the ETL worker sends it; nobody else reads them.
SECRET_PREFIXES = ("ETL_SOURCE_KEY__",)
SERVER_KEY_PROCESSES = frozenset({"web", "worker-etl"})
# Never a plain value, wherever they appear.
SECRETS = {name for names in SECRETS_BY_PROCESS.values() for name in names} | {
    "JWT_SIGNING_KEY",
    "CELERY_BROKER_URL",
    "DEMO_PASSWORD",
}

PLACEHOLDER = re.compile(r"__[A-Z][A-Z0-9_]*__")
IMAGE = "__IMAGE__"
APP_KINDS = {"Service", "Job", "WorkerPool"}
# The identity each process runs as, one account each, so an account holds one process's
# secrets (docs/deploy.md, "Service accounts"): __SERVICE__-<account>@.
ACCOUNT_OF = {
    "web": "web",
    "worker-jobs": "jobs",
    "worker-webhooks": "webhooks",
    "worker-etl": "etl",
    "worker-audits": "audits",
    "worker-periodic": "periodic",
    "beat": "beat",
    "migrate": "migrate",
}
# docs/deploy.md grants secrets with lines `grant <account> <secret> ...` (step 9).
DEPLOY_DOC = Path("docs") / "deploy.md"
# Variables that legitimately differ between processes; every other one is the same
# everywhere it appears.
ROLE_SPECIFIC = frozenset(
    {
        "ALLOWED_HOSTS",
        "WORKER_METRICS_PORT",
        "WEB_CONCURRENCY",
        "GUNICORN_THREADS",
        "PERIODIC_INVOKER",
        "PERIODIC_AUDIENCE",
    }
)
PERIODIC_PATH = "/internal/periodic"
SCHEDULER_ACCOUNT = "__SERVICE__-scheduler@__PROJECT_ID__.iam.gserviceaccount.com"
# The metrics sidecar: Google's build of the OpenTelemetry Collector, its configuration
# (ops/cloudrun/otel-collector.yaml) a secret mounted as a file, like the metrics token.
COLLECTOR = "otel-collector"
COLLECTOR_IMAGE = "__OTEL_COLLECTOR_IMAGE__"
COLLECTOR_CONFIG_SECRET = "__SERVICE__-otel-collector-config"
METRICS_TOKEN_SECRET = "__SERVICE__-metrics-token"
# The only variable a sidecar is given: read by the collector (its `env` resource
# detector), not by nexus/.
COLLECTOR_ENV = frozenset({"OTEL_RESOURCE_ATTRIBUTES"})

# What Cloud Build substitutes by itself (a trigger on main supplies the commit).
BUILT_IN = {
    "PROJECT_ID": "demo-project",
    "PROJECT_NUMBER": "123456789012",
    "BUILD_ID": "00000000-0000-0000-0000-000000000000",
    "LOCATION": "global",
    "COMMIT_SHA": "0123456789abcdef0123456789abcdef01234567",
    "SHORT_SHA": "0123456",
    "REVISION_ID": "0123456789abcdef0123456789abcdef01234567",
    "BRANCH_NAME": "main",
    "REPO_NAME": "nexus",
    "TRIGGER_NAME": "deploy-main",
}


# --- Reading the files -----------------------------------------------------------------------


@dataclass
class Deployment:
    root: Path  # where ops/cloudrun/ is (the render step reads it from there)
    files: dict[str, dict]  # ops/cloudrun/<stem>.yaml, parsed
    cloudbuild: dict
    deploy_doc: str  # docs/deploy.md

    @property
    def apps(self) -> dict[str, dict]:
        """The resources that run the image: web, the migration job, workers, beat."""
        return {
            stem: doc
            for stem, doc in self.files.items()
            if isinstance(doc, dict) and doc.get("kind") in APP_KINDS
        }

    @property
    def scheduler_jobs(self) -> list[dict]:
        return self.files["scheduler"]

    @property
    def collector(self) -> dict:
        return self.files[COLLECTOR]


def load(root: Path = ROOT) -> Deployment:
    files = {path.stem: yaml.safe_load(path.read_text()) for path in sorted((root / CLOUDRUN).glob("*.yaml"))}
    return Deployment(
        root=root,
        files=files,
        cloudbuild=yaml.safe_load((root / "cloudbuild.yaml").read_text()),
        deploy_doc=(root / DEPLOY_DOC).read_text(),
    )


def pod_spec(doc: dict) -> dict:
    if doc["kind"] == "Job":
        return doc["spec"]["template"]["spec"]["template"]["spec"]
    return doc["spec"]["template"]["spec"]


def revision_annotations(doc: dict) -> dict:
    return (doc["spec"]["template"].get("metadata") or {}).get("annotations") or {}


def app_container(doc: dict) -> dict:
    return pod_spec(doc)["containers"][0]


def sidecars(doc: dict) -> list[dict]:
    return pod_spec(doc)["containers"][1:]


def env_of(container: dict) -> dict[str, dict]:
    return {entry["name"]: entry for entry in container.get("env") or []}


def plain(doc: dict, name: str) -> str | None:
    entry = env_of(app_container(doc)).get(name)
    return entry.get("value") if entry else None


def command_line(container: dict) -> list[str]:
    return [*(container.get("command") or []), *(container.get("args") or [])]


def option(words: list[str], flag: str) -> str | None:
    return words[words.index(flag) + 1] if flag in words and words.index(flag) + 1 < len(words) else None


def instance_bounds(doc: dict) -> tuple[int, int]:
    """(fewest, most) instances the resource may run."""
    if doc["kind"] == "WorkerPool":
        count = int(doc["metadata"]["annotations"]["run.googleapis.com/manualInstanceCount"])
        return count, count
    annotations = revision_annotations(doc)
    return (
        int(annotations.get("autoscaling.knative.dev/minScale", 0)),
        int(annotations.get("autoscaling.knative.dev/maxScale", 100)),
    )


def every_container(deployment: Deployment) -> Iterator[tuple[str, dict]]:
    for stem, doc in deployment.apps.items():
        for container in pod_spec(doc)["containers"]:
            yield stem, container


def is_secret_name(name: str) -> bool:
    return name in SECRETS or name.startswith(SECRET_PREFIXES)


def secret_of(variable: str) -> str:
    """The Secret Manager secret a variable is read from: SECRET_KEY -> __SERVICE__-secret-key."""
    return "__SERVICE__-" + variable.lower().replace("_", "-")


def secrets_read(doc: dict) -> set[str]:
    """Every Secret Manager secret the resource reads, as a variable or a mounted file, in
    any of its containers: what its service account must be allowed to access."""
    names = {
        ref["name"]
        for container in pod_spec(doc)["containers"]
        for entry in container.get("env") or []
        if (ref := (entry.get("valueFrom") or {}).get("secretKeyRef"))
    }
    return names | {v["secret"]["secretName"] for v in pod_spec(doc).get("volumes") or [] if "secret" in v}


def secrets_expected(stem: str) -> set[str]:
    """What SECRETS_BY_PROCESS gives the process, plus its collector's configuration where
    it serves metrics."""
    names = {secret_of(variable) for variable in SECRETS_BY_PROCESS[stem]}
    return names | ({COLLECTOR_CONFIG_SECRET} if "METRICS_TOKEN" in SECRETS_BY_PROCESS[stem] else set())


def grants_in(doc_text: str) -> dict[str, set[str]]:
    """account -> secrets granted by docs/deploy.md's `grant <account> <secret> ...` lines
    (continued with a backslash), secrets named as __SERVICE__-<secret>."""
    granted: dict[str, set[str]] = {}
    for line in doc_text.replace("\\\n", " ").splitlines():
        words = line.split()
        if len(words) > 2 and words[0] == "grant":
            granted.setdefault(words[1], set()).update(f"__SERVICE__-{word}" for word in words[2:])
    return granted


# --- What the code reads -------------------------------------------------------------------


_ENV_HELPERS = {"env", "env_bool", "env_int", "env_list"}


def _env_call_name(node: ast.AST) -> str | None:
    """The NAME of env("NAME", ...), env_int("NAME", ...), os.environ.get("NAME"), os.getenv("NAME")."""
    if not isinstance(node, ast.Call) or not node.args or not isinstance(node.args[0], ast.Constant):
        return None
    func = node.func
    helper = isinstance(func, ast.Name) and func.id in _ENV_HELPERS
    environ_get = isinstance(func, ast.Attribute) and (
        (func.attr == "get" and isinstance(func.value, ast.Attribute) and func.value.attr == "environ")
        or (func.attr == "getenv" and isinstance(func.value, ast.Name) and func.value.id == "os")
    )
    return node.args[0].value if helper or environ_get else None


def required_by_settings(source: str | None = None) -> set[str]:
    """Variables settings.py reads with no default and raises ImproperlyConfigured without:
    `X = env("NAME")` followed by `if not X: ... raise ImproperlyConfigured(...)`."""
    tree = ast.parse(source if source is not None else SETTINGS_FILE.read_text())
    without_default: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and (name := _env_call_name(node.value)):
            call = node.value
            if len(call.args) == 1 and not call.keywords:
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        without_default[target.id] = name
    required = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.If):
            continue
        raises = any(
            isinstance(inner, ast.Raise)
            and isinstance(inner.exc, ast.Call)
            and getattr(inner.exc.func, "id", None) == "ImproperlyConfigured"
            for statement in node.body
            for inner in ast.walk(statement)
        )
        if raises:
            tested = {name.id for name in ast.walk(node.test) if isinstance(name, ast.Name)}
            required |= {without_default[name] for name in tested if name in without_default}
    return required


# Families of variables the settings read by prefix (ANYMAIL_<SETTING> -> ANYMAIL[<SETTING>]).
READ_BY_PREFIX = ("ANYMAIL_",)


def read_by_the_code() -> set[str]:
    """Every variable nexus/ reads: settings.py, the Celery app, gunicorn.conf.py, the rest."""
    settings_text = SETTINGS_FILE.read_text()
    assert all(f'startswith("{prefix}")' in settings_text for prefix in READ_BY_PREFIX), READ_BY_PREFIX
    names = set()
    for path in (ROOT / "nexus").glob("*.py"):
        if path.name == "settings_test.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if name := _env_call_name(node):
                names.add(name)
            elif (
                isinstance(node, ast.Subscript)
                and isinstance(node.value, ast.Attribute)
                and node.value.attr == "environ"
                and isinstance(node.slice, ast.Constant)
            ):
                names.add(node.slice.value)
    return names


# --- Cloud Build ---------------------------------------------------------------------------

_CLOUD_BUILD_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def substitute(text: str, values: dict[str, str]) -> str:
    """What Cloud Build does to a step's args and env before running it: $VAR and ${VAR}
    become their value, $$ a literal $. An unknown variable fails the build."""

    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(name)
        return values[name]

    return _CLOUD_BUILD_VARIABLE.sub(replace, text)


def build_values(deployment: Deployment) -> dict[str, str]:
    return {**BUILT_IN, **(deployment.cloudbuild.get("substitutions") or {})}


def steps(deployment: Deployment) -> dict[str, dict]:
    return {step.get("id", str(index)): step for index, step in enumerate(deployment.cloudbuild["steps"])}


def depends_on(deployment: Deployment) -> dict[str, set[str]]:
    """Each step's prerequisites, transitively: waitFor, or every earlier step without it."""
    order = list(steps(deployment))
    direct = {}
    for index, (step_id, step) in enumerate(steps(deployment).items()):
        wait = step.get("waitFor")
        direct[step_id] = set(order[:index]) if wait is None else {w for w in wait if w != "-"}
    closed: dict[str, set[str]] = {}

    def close(step_id: str) -> set[str]:
        if step_id not in closed:
            closed[step_id] = set()
            for prerequisite in direct.get(step_id, ()):
                closed[step_id] |= {prerequisite, *close(prerequisite)}
        return closed[step_id]

    return {step_id: close(step_id) for step_id in order}


def step_text(step: dict) -> str:
    return " ".join([*(step.get("args") or []), *(step.get("env") or [])])


def deploy_steps(deployment: Deployment) -> dict[str, tuple[str, str]]:
    """step id -> (the gcloud command group, the rendered file it applies)."""
    found = {}
    for step_id, step in steps(deployment).items():
        args = step.get("args") or []
        if "replace" in args:
            group = " ".join(args[: args.index("replace")])
            found[step_id] = (group, Path(args[args.index("replace") + 1]).stem)
    return found


def render(deployment: Deployment, out: Path) -> dict[str, str]:
    """Runs the build's render step (as Cloud Build would substitute it) into `out`."""
    step = steps(deployment)["render"]
    script = substitute(step["args"][-1], build_values(deployment)).replace("/workspace/deploy", str(out))
    subprocess.run(
        ["bash", "-ceu", script], cwd=deployment.root, check=True, capture_output=True, text=True, timeout=60
    )
    return {path.stem: path.read_text() for path in out.glob("*.yaml")}


# --- The checks ----------------------------------------------------------------------------


def check_required(deployment: Deployment) -> list[str]:
    """What settings.py refuses to start without, and the secrets the process's code uses."""
    problems = []
    for stem, doc in deployment.apps.items():
        wanted = SECRETS_BY_PROCESS.get(stem, {})
        for name in sorted((required_by_settings() | set(wanted)) - set(env_of(app_container(doc)))):
            why = wanted.get(name, "required in production")
            problems.append(f"{stem}: {name} is not provided ({why})")
    return problems


def check_least_privilege(deployment: Deployment) -> list[str]:
    """No process reads a secret its code does not use, as a variable or as a file."""
    problems = []
    server_keys = tuple(secret_of(prefix) for prefix in SECRET_PREFIXES)
    for stem, doc in deployment.apps.items():
        if stem not in SECRETS_BY_PROCESS:
            problems.append(f"{stem}: not in SECRETS_BY_PROCESS (say which secrets it uses, and why)")
            continue
        for secret in sorted(secrets_read(doc) - secrets_expected(stem)):
            if not (secret.startswith(server_keys) and stem in SERVER_KEY_PROCESSES):
                problems.append(f"{stem}: reads {secret}, which nothing it runs uses (SECRETS_BY_PROCESS)")
    return problems


def check_docs_grant_what_each_reads(deployment: Deployment) -> list[str]:
    """docs/deploy.md grants each process's own account exactly the secrets the process
    reads: fewer and it cannot start, more and the account holds what it never uses."""
    problems = []
    granted = grants_in(deployment.deploy_doc)
    for stem, doc in deployment.apps.items():
        account = ACCOUNT_OF.get(stem, "?")
        given, read = granted.get(account, set()), secrets_read(doc)
        if missing := sorted(read - given):
            problems.append(f"{DEPLOY_DOC}: `grant {account}` lacks {missing}, which {stem} reads")
        if extra := sorted(given - read):
            problems.append(f"{DEPLOY_DOC}: `grant {account}` gives {extra}, which {stem} does not read")
    if unknown := sorted(set(granted) - set(ACCOUNT_OF.values())):
        problems.append(f"{DEPLOY_DOC}: grants secrets to {unknown}, the account of no process")
    return problems


def check_secrets(deployment: Deployment) -> list[str]:
    problems = []
    for stem, container in every_container(deployment):
        for name, entry in env_of(container).items():
            if not is_secret_name(name):
                continue
            ref = (entry.get("valueFrom") or {}).get("secretKeyRef")
            expected = secret_of(name)
            if "value" in entry or not ref:
                problems.append(f"{stem}: {name} must come from Secret Manager (valueFrom.secretKeyRef)")
            elif ref.get("name") != expected or ref.get("key") != "latest":
                problems.append(f"{stem}: {name} must reference secret {expected}, version latest")
    for key in deployment.cloudbuild.get("substitutions") or {}:
        if is_secret_name(key.lstrip("_")):
            problems.append(f"cloudbuild.yaml: substitution {key} would put a secret in the build config")
    for step_id, step in steps(deployment).items():
        for assignment in step.get("env") or []:
            if is_secret_name(assignment.split("=", 1)[0]):
                problems.append(f"cloudbuild.yaml: step {step_id} sets a secret in plain text")
    return problems


_SECRET_SHAPE = re.compile(
    r"\b(?:sk|rk|pk)_(?:live|test)_|\bwhsec_|\bAIza[0-9A-Za-z_\-]{20,}|-----BEGIN|://[^/\s:@]+:[^/\s@]+@|\bghp_|\bxox[abp]-"
)


def _entropy(token: str) -> float:
    counts = Counter(token)
    return -sum(n / len(token) * math.log2(n / len(token)) for n in counts.values())


def looks_secret(value: str) -> bool:
    if _SECRET_SHAPE.search(value):
        return True
    # Placeholders are names, not values; `key=value` lists (OTEL_RESOURCE_ATTRIBUTES) are
    # judged value by value; a dotted Python path (EMAIL_BACKEND) is a name too.
    return any(
        len(token) >= 20
        and re.fullmatch(r"[A-Za-z0-9+/_\-.]+", token)
        and not re.fullmatch(r"[a-z_]+(\.[A-Za-z_]+)+", token)
        and _entropy(token) >= 3.5
        for token in re.split(r"[\s,;|=]+", PLACEHOLDER.sub("", value))
    )


def check_plain_values(deployment: Deployment) -> list[str]:
    problems = [
        f"{stem}: the value of {name} looks like a secret"
        for stem, container in every_container(deployment)
        for name, entry in env_of(container).items()
        if isinstance(entry.get("value"), str) and looks_secret(entry["value"])
    ]
    for key, value in (deployment.cloudbuild.get("substitutions") or {}).items():
        if looks_secret(str(value)):
            problems.append(f"cloudbuild.yaml: substitution {key} looks like a secret")
    for step_id, step in steps(deployment).items():
        for assignment in step.get("env") or []:
            if looks_secret(assignment.split("=", 1)[-1]):
                problems.append(f"cloudbuild.yaml: step {step_id} has an env value that looks like a secret")
    return problems


def check_names_are_read(deployment: Deployment) -> list[str]:
    known = read_by_the_code()
    problems = [
        f"{stem}: {name} is read by nothing in nexus/ (a typo?)"
        for stem, doc in deployment.apps.items()
        for name in env_of(app_container(doc))
        if name not in known and not name.startswith(SECRET_PREFIXES + READ_BY_PREFIX)
    ]
    problems += [
        f"{stem}: the sidecar's {name} is not a variable the collector reads"
        for stem, doc in deployment.apps.items()
        for container in sidecars(doc)
        for name in env_of(container)
        if name not in COLLECTOR_ENV
    ]
    return problems


def check_shared_settings(deployment: Deployment) -> list[str]:
    """A variable set in several processes has one value, and the URLs agree."""
    problems = []
    seen: dict[str, tuple[str, dict]] = {}
    for stem, doc in deployment.apps.items():
        for name, entry in env_of(app_container(doc)).items():
            if name in ROLE_SPECIFIC:
                continue
            if name in seen and seen[name][1] != entry:
                problems.append(f"{stem}: {name} differs from {seen[name][0]}")
            seen.setdefault(name, (stem, entry))
    for stem, doc in deployment.apps.items():
        base = plain(doc, "PUBLIC_BASE_URL") or ""
        host = urlsplit(base).netloc  # not .hostname: it lower-cases the placeholder
        if urlsplit(base).scheme != "https":
            problems.append(f"{stem}: PUBLIC_BASE_URL must be https")
        if host not in (plain(doc, "ALLOWED_HOSTS") or "").split(","):
            problems.append(f"{stem}: ALLOWED_HOSTS must include PUBLIC_BASE_URL's host")
        if base.rstrip("/") not in (plain(doc, "CSRF_TRUSTED_ORIGINS") or "").split(","):
            problems.append(f"{stem}: CSRF_TRUSTED_ORIGINS must include PUBLIC_BASE_URL")
        if plain(doc, "DEBUG") != "false":
            problems.append(f"{stem}: DEBUG must be false")
        if plain(doc, "FILE_STORAGE_BACKEND") != "gcs" or not plain(doc, "FILE_STORAGE_BUCKET"):
            problems.append(f"{stem}: uploads must go to the bucket (no disk is shared on Cloud Run)")
        if plain(doc, "RELEASE") != "__RELEASE__":
            problems.append(f"{stem}: RELEASE must be the commit (__RELEASE__)")
    return problems


def _names_network_and_subnet(annotation: str) -> bool:
    try:
        interfaces = json.loads(annotation)
        return bool(interfaces[0]["network"] and interfaces[0]["subnetwork"])
    except (ValueError, LookupError, TypeError):
        return False


def check_identity_and_network(deployment: Deployment) -> list[str]:
    problems = []
    for stem, doc in deployment.apps.items():
        expected = f"__SERVICE__-{ACCOUNT_OF.get(stem, '?')}@__PROJECT_ID__.iam.gserviceaccount.com"
        if pod_spec(doc).get("serviceAccountName") != expected:
            problems.append(f"{stem}: must run as {expected}")
        annotations = revision_annotations(doc)
        if annotations.get("run.googleapis.com/cloudsql-instances") != "__SQL_CONNECTION__":
            problems.append(f"{stem}: no Cloud SQL connection (run.googleapis.com/cloudsql-instances)")
        if annotations.get("run.googleapis.com/vpc-access-egress") != "private-ranges-only":
            problems.append(f"{stem}: Redis needs Direct VPC egress (private-ranges-only)")
        if not _names_network_and_subnet(annotations.get("run.googleapis.com/network-interfaces", "")):
            problems.append(f"{stem}: run.googleapis.com/network-interfaces must name a network and subnet")
        if app_container(doc)["image"] != IMAGE:
            problems.append(f"{stem}: the application's image must be the placeholder {IMAGE}")
    return problems


def check_workers(deployment: Deployment) -> list[str]:
    problems = []
    kinds = set(settings.CELERY_QUEUES_BY_KIND)
    workers = {
        stem.removeprefix("worker-"): doc
        for stem, doc in deployment.apps.items()
        if stem.startswith("worker-")
    }
    if set(workers) != kinds:
        problems.append(f"worker files {sorted(workers)} are not one per queue {sorted(kinds)}")
    for kind, doc in workers.items():
        stem = f"worker-{kind}"
        if doc["kind"] == "Service":
            if revision_annotations(doc).get("run.googleapis.com/cpu-throttling") != "false":
                problems.append(f"{stem}: a worker needs CPU always allocated")
        elif doc["kind"] != "WorkerPool":  # a worker pool is never throttled
            problems.append(f"{stem}: must be a worker pool (or a service with CPU always allocated)")
        if instance_bounds(doc)[0] < 1:
            problems.append(f"{stem}: must keep at least one instance")
        words = command_line(app_container(doc))
        prefix = plain(doc, "CELERY_QUEUE_PREFIX") or ""
        if words[:4] != ["celery", "-A", "nexus", "worker"]:
            problems.append(f"{stem}: must run `celery -A nexus worker`")
        if option(words, "--queues") != f"{prefix}{kind}":
            problems.append(f"{stem}: consumes {option(words, '--queues')!r}, not the {kind!r} queue")
        if option(words, "--hostname") != f"{kind}@%h":
            problems.append(f"{stem}: --hostname must be {kind}@%h")
    compose = yaml.safe_load((deployment.root / "docker-compose.yml").read_text())["services"]
    composed = {
        option(service.get("command") or [], "--queues")
        for name, service in compose.items()
        if name.startswith("worker-")
    }
    if composed != kinds:
        problems.append(
            f"docker-compose.yml's workers consume {sorted(composed)}, the settings route {sorted(kinds)}"
        )
    return problems


def check_periodic_trigger(deployment: Deployment) -> list[str]:
    """Beat sends the schedule from exactly one instance, or Cloud Scheduler does (web's
    PERIODIC_INVOKER set, beat at 0); never both, never neither."""
    problems = []
    beat, web = deployment.files["beat"], deployment.files["web"]
    if command_line(app_container(beat))[:4] != ["celery", "-A", "nexus", "beat"]:
        problems.append("beat: must run `celery -A nexus beat`")
    invoker = plain(web, "PERIODIC_INVOKER")
    if invoker:
        if instance_bounds(beat) != (0, 0):
            problems.append("PERIODIC_INVOKER is set, so beat must be scaled to 0 (never both)")
        signers = {job["httpTarget"]["oidcToken"]["serviceAccountEmail"] for job in deployment.scheduler_jobs}
        if signers != {invoker}:
            problems.append(f"PERIODIC_INVOKER is {invoker}, the scheduler jobs sign as {sorted(signers)}")
    elif instance_bounds(beat) != (1, 1):
        problems.append(
            f"beat must run exactly one instance while PERIODIC_INVOKER is unset, not {instance_bounds(beat)}"
        )
    return problems


# A cron line Cloud Scheduler runs at a fixed period, and that period in minutes.
_CRON_PERIODS: list[tuple[re.Pattern, Callable[[re.Match], int]]] = [
    (re.compile(r"\* \* \* \* \*"), lambda m: 1),
    (re.compile(r"\*/(\d+) \* \* \* \*"), lambda m: int(m[1]) if 60 % int(m[1]) == 0 else 0),
    (re.compile(r"\d{1,2} \* \* \* \*"), lambda m: 60),
    (re.compile(r"\d{1,2} \*/(\d+) \* \* \*"), lambda m: 60 * int(m[1]) if 24 % int(m[1]) == 0 else 0),
    (re.compile(r"\d{1,2} \d{1,2} \* \* \*"), lambda m: 24 * 60),
]


def cron_period_minutes(schedule: str) -> int | None:
    """The period of a cron line that fires at fixed intervals; None for any other."""
    for pattern, period in _CRON_PERIODS:
        if match := pattern.fullmatch(schedule.strip()):
            return period(match) or None
    return None


def scheduled_minutes(entry: dict) -> int | None:
    """The entry's period rounded up to whole minutes (Cloud Scheduler's least period is a
    minute); None for a schedule that is not a fixed period (a crontab: map it by hand)."""
    schedule = entry["schedule"]
    if isinstance(schedule, timedelta):
        schedule = schedule.total_seconds()
    if not isinstance(schedule, int | float) or schedule <= 0:
        return None
    return max(1, math.ceil(schedule / 60))


def check_scheduler(deployment: Deployment) -> list[str]:
    """One Cloud Scheduler job per entry of CELERY_BEAT_SCHEDULE, each POSTing the entry's
    URL at the entry's period (rounded up to whole minutes), signed as the scheduler's own
    account for the one audience web expects."""
    problems = []
    web = deployment.files["web"]
    base = plain(web, "PUBLIC_BASE_URL") or ""
    audience = plain(web, "PERIODIC_AUDIENCE")
    if audience != base + PERIODIC_PATH:
        problems.append(f"web: PERIODIC_AUDIENCE must be {base}{PERIODIC_PATH} (one audience for every job)")
    schedule = settings.CELERY_BEAT_SCHEDULE
    jobs: dict[str, dict] = {}
    for job in deployment.scheduler_jobs:
        target = job["httpTarget"]
        uri = target["uri"]
        entry = (
            uri.removeprefix(f"{base}{PERIODIC_PATH}/") if uri.startswith(f"{base}{PERIODIC_PATH}/") else None
        )
        if not entry:
            problems.append(f"scheduler: {uri} is not {base}{PERIODIC_PATH}/<entry>")
            continue
        if entry in jobs:
            problems.append(f"scheduler: two jobs for {entry}")
        jobs[entry] = job
        if job["name"].rsplit("/", 1)[-1] != f"__SERVICE__-{entry}":
            problems.append(f"scheduler: the job for {entry} must be named __SERVICE__-{entry}")
        if target["httpMethod"] != "POST":
            problems.append(f"scheduler: {entry} must be a POST")
        try:
            match = resolve(urlsplit(uri).path)
        except Resolver404:
            match = None
        if match is None or match.url_name != "periodic-trigger" or match.kwargs != {"entry": entry}:
            problems.append(
                f"scheduler: nexus/urls.py does not route {urlsplit(uri).path} to the periodic trigger"
            )
        if target["oidcToken"]["audience"] != audience:
            problems.append(
                f"scheduler: {entry}'s token audience must be web's PERIODIC_AUDIENCE ({audience})"
            )
        if target["oidcToken"]["serviceAccountEmail"] != SCHEDULER_ACCOUNT:
            problems.append(f"scheduler: {entry} must sign as the scheduler's own service account")
        if entry in schedule:
            wanted, got = scheduled_minutes(schedule[entry]), cron_period_minutes(job["schedule"])
            if wanted is None:
                problems.append(
                    f"scheduler: {entry}'s schedule is not a fixed period; map it by hand and here"
                )
            elif got != wanted:
                problems.append(
                    f"scheduler: {entry} runs every {got} min ({job['schedule']!r}); beat's period "
                    f"rounded up to whole minutes is {wanted} min"
                )
    if missing := sorted(set(schedule) - set(jobs)):
        problems.append(f"scheduler: no job for {missing}: nothing would send them once beat is at 0")
    if unknown := sorted(set(jobs) - set(schedule)):
        problems.append(
            f"scheduler: {unknown} are not entries of CELERY_BEAT_SCHEDULE (the endpoint answers 404)"
        )
    return problems


def _env_pairs(value: str) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in value.split(",") if "=" in pair)


def _secret_mounts(doc: dict, container: dict) -> dict[str, tuple[str, str]]:
    """mount path -> (secret, file name) of every secret volume the container mounts."""
    volumes = {v["name"]: v["secret"] for v in pod_spec(doc).get("volumes") or [] if "secret" in v}
    mounts = {}
    for mount in container.get("volumeMounts") or []:
        secret = volumes.get(mount["name"])
        if secret:
            for item in secret["items"]:
                mounts[mount["mountPath"].rstrip("/") + "/" + item["path"]] = (
                    secret["secretName"],
                    item["key"],
                )
    return mounts


def check_metrics(deployment: Deployment) -> list[str]:
    """Web and every worker serve /metrics to the metrics token only; a collector sidecar in
    each scrapes it over localhost with that token, read from the same secret, under the job
    name the alerts watch, and labels the series with the process's own namespace."""
    problems = []
    collector = deployment.collector
    scrapes = collector["receivers"]["prometheus"]["config"]["scrape_configs"]
    if len(scrapes) != 1:
        return [f"{COLLECTOR}: one scrape job, not {len(scrapes)}"]
    scrape = scrapes[0]
    alerts = (deployment.root / "ops" / "prometheus" / "alerts.yml").read_text()
    watched = set(re.findall(r'up\{job="([^"]+)"\}', alerts))
    if watched != {scrape["job_name"]}:
        problems.append(f"{COLLECTOR}: job {scrape['job_name']!r}, the alerts watch {sorted(watched)}")
    if scrape.get("metrics_path", "/metrics") != "/metrics":
        problems.append(f"{COLLECTOR}: the path is /metrics")
    authorization = scrape.get("authorization") or {}
    token_file = authorization.get("credentials_file")
    if authorization.get("type") != "Bearer" or not token_file:
        problems.append(
            f"{COLLECTOR}: the scrape must send the metrics token (authorization: Bearer, credentials_file)"
        )
    targets = [target for group in scrape["static_configs"] for target in group["targets"]]
    hosts = {target.rsplit(":", 1)[0] for target in targets}
    ports = {target.rsplit(":", 1)[1] for target in targets}
    if hosts != {"localhost"}:
        problems.append(f"{COLLECTOR}: scrapes {targets}; the sidecar reaches its process at localhost only")
    pipelines = collector["service"]["pipelines"].values()
    if not any(
        "prometheus" in p["receivers"] and "googlemanagedprometheus" in p["exporters"] for p in pipelines
    ):
        problems.append(f"{COLLECTOR}: no pipeline from the prometheus receiver to googlemanagedprometheus")
    detectors = ((collector.get("processors") or {}).get("resourcedetection") or {}).get("detectors") or []
    if "env" not in detectors or not any(
        "resourcedetection" in (p.get("processors") or []) for p in pipelines
    ):
        problems.append(f"{COLLECTOR}: the env detector must read the sidecars' OTEL_RESOURCE_ATTRIBUTES")
    health_port = str(
        (collector.get("extensions") or {}).get("health_check", {}).get("endpoint", ":")
    ).rsplit(":", 1)[1]
    if PLACEHOLDER.search(json.dumps(collector)):
        problems.append(f"{COLLECTOR}: uploaded as it is, so it can hold no placeholder")

    namespaces: dict[str, str] = {}
    for stem, doc in deployment.apps.items():
        if stem != "web" and not stem.startswith("worker-"):
            if sidecars(doc):
                problems.append(f"{stem}: serves no metrics, so it runs no collector")
            continue  # beat and the migration job serve no metrics
        app = app_container(doc)
        served_on = (
            {str(port["containerPort"]) for port in app.get("ports") or []}
            if stem == "web"
            else {plain(doc, "WORKER_METRICS_PORT")}
        )
        if served_on != ports:
            problems.append(
                f"{stem}: /metrics is on {sorted(served_on)}, the collector scrapes {sorted(ports)}"
            )
        token_ref = (env_of(app).get("METRICS_TOKEN", {}).get("valueFrom") or {}).get("secretKeyRef") or {}
        if token_ref.get("name") != METRICS_TOKEN_SECRET:
            problems.append(
                f"{stem}: serves /metrics, so METRICS_TOKEN must come from {METRICS_TOKEN_SECRET}"
            )
        if "METRICS_ALLOWED_IPS" in env_of(app):
            problems.append(
                f"{stem}: METRICS_ALLOWED_IPS: the token alone guards /metrics (both would have to pass)"
            )
        collectors = [c for c in sidecars(doc) if c["image"] == COLLECTOR_IMAGE]
        if len(collectors) != 1:
            problems.append(f"{stem}: needs one collector sidecar ({COLLECTOR_IMAGE})")
            continue
        sidecar = collectors[0]
        mounts = _secret_mounts(doc, sidecar)
        config = option([a for arg in sidecar.get("args") or [] for a in arg.split("=", 1)], "--config")
        if mounts.get(config or "") != (COLLECTOR_CONFIG_SECRET, "latest"):
            problems.append(
                f"{stem}: the collector's --config must be {COLLECTOR_CONFIG_SECRET} mounted as a file"
            )
        if token_file and mounts.get(token_file) != (token_ref.get("name"), "latest"):
            problems.append(
                f"{stem}: the collector must find the token at {token_file}, "
                "from the secret the app's METRICS_TOKEN reads"
            )
        probe_ports = {
            str(probe["httpGet"]["port"])
            for probe in (sidecar.get("startupProbe"), sidecar.get("livenessProbe"))
            if probe and "httpGet" in probe
        }
        if probe_ports - {health_port}:
            problems.append(
                f"{stem}: the collector's probes ask {sorted(probe_ports)}, "
                f"its health check is on {health_port}"
            )
        labels = _env_pairs((env_of(sidecar).get("OTEL_RESOURCE_ATTRIBUTES") or {}).get("value", ""))
        if labels.get("namespace") != doc["metadata"]["name"] or labels.get("location") != "__REGION__":
            problems.append(
                f"{stem}: the collector's OTEL_RESOURCE_ATTRIBUTES must be location=__REGION__,"
                f"namespace={doc['metadata']['name']} "
                "(every target is localhost: the namespace tells them apart)"
            )
        if labels.get("namespace") in namespaces:
            problems.append(
                f"{stem}: namespace {labels['namespace']} is {namespaces[labels['namespace']]}'s too"
            )
        namespaces.setdefault(labels.get("namespace", ""), stem)
    web_hosts = set((plain(deployment.files["web"], "ALLOWED_HOSTS") or "").split(","))
    public_host = urlsplit(plain(deployment.files["web"], "PUBLIC_BASE_URL") or "").netloc
    if web_hosts != {public_host} | hosts:
        problems.append(
            f"web: ALLOWED_HOSTS must be the public host and {sorted(hosts)} (the Host of the collector's "
            f"scrapes), nothing else: {sorted(web_hosts)}"
        )
    return problems


def check_build_order(deployment: Deployment) -> list[str]:
    """Migrations run, and are waited for, before anything is deployed; every resource is
    deployed by the command of its kind; every substitution is defined and used."""
    problems = []
    values = build_values(deployment)
    for step_id, step in steps(deployment).items():
        try:
            substitute(step_text(step), values)
        except KeyError as exc:
            problems.append(f"cloudbuild.yaml: step {step_id} uses ${exc.args[0]}, which nothing defines")
    text = json.dumps(deployment.cloudbuild["steps"]) + json.dumps(deployment.cloudbuild.get("images"))
    for key in deployment.cloudbuild.get("substitutions") or {}:
        if f"${{{key}}}" not in text and not re.search(rf"\${key}\b", text):
            problems.append(f"cloudbuild.yaml: substitution {key} is never used (Cloud Build refuses that)")

    job = deployment.files["migrate"]
    script = " ".join(command_line(app_container(job)))
    if not re.search(r"migrate_schemas --noinput && python manage\.py sync_template_schema", script):
        problems.append("migrate: must run migrate_schemas, then sync_template_schema")
    job_name = job["metadata"]["name"].replace("__SERVICE__", "${_SERVICE}")
    runs = [
        step_id
        for step_id, step in steps(deployment).items()
        if (args := step.get("args") or [])[:3] == ["run", "jobs", "execute"]
        and job_name in args
        and "--wait" in args
    ]
    if len(runs) != 1:
        return [*problems, f"cloudbuild.yaml: no step runs {job_name} and waits for it"]
    deployed = deploy_steps(deployment)
    after = depends_on(deployment)
    group_of = {"Service": "run services", "WorkerPool": "run worker-pools", "Job": "run jobs"}
    # The collector's configuration is uploaded from the repository before any sidecar
    # that reads it is deployed.
    secret = COLLECTOR_CONFIG_SECRET.replace("__SERVICE__", "${_SERVICE}")
    uploads = [
        step_id
        for step_id, step in steps(deployment).items()
        if "secrets versions add" in (text := step_text(step))
        and secret in text
        and f"--data-file={CLOUDRUN.as_posix()}/{COLLECTOR}.yaml" in text
    ]
    if len(uploads) != 1:
        problems.append(f"cloudbuild.yaml: no step adds {CLOUDRUN}/{COLLECTOR}.yaml as a version of {secret}")
    for stem, doc in deployment.apps.items():
        doing = [step_id for step_id, (group, file) in deployed.items() if file == stem]
        if len(doing) != 1:
            problems.append(f"cloudbuild.yaml: {stem} is deployed by {len(doing)} steps, not one")
            continue
        if deployed[doing[0]][0] != group_of[doc["kind"]]:
            problems.append(
                f"cloudbuild.yaml: {stem} is a {doc['kind']}: `gcloud {group_of[doc['kind']]} replace`"
            )
        if stem != "migrate" and runs[0] not in after[doing[0]]:
            problems.append(f"cloudbuild.yaml: {stem} is deployed without waiting for the migrations")
        if sidecars(doc) and uploads and uploads[0] not in after[doing[0]]:
            problems.append(
                f"cloudbuild.yaml: {stem} is deployed before its collector's configuration is uploaded"
            )
        if "push" not in after[doing[0]]:
            problems.append(f"cloudbuild.yaml: {stem} is deployed before the image is pushed")
    return problems


CHECKS = [
    check_required,
    check_least_privilege,
    check_docs_grant_what_each_reads,
    check_secrets,
    check_plain_values,
    check_names_are_read,
    check_shared_settings,
    check_identity_and_network,
    check_workers,
    check_periodic_trigger,
    check_scheduler,
    check_metrics,
    check_build_order,
]


@pytest.fixture(scope="module")
def deployment() -> Deployment:
    return load()


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__)
def test_deployment_files_pass(deployment, check):
    assert check(deployment) == []


def test_every_process_is_described(deployment):
    workers = {f"worker-{kind}" for kind in settings.CELERY_QUEUES_BY_KIND}
    assert set(deployment.apps) == {"web", "migrate", "beat", *workers}
    assert set(SECRETS_BY_PROCESS) == set(ACCOUNT_OF) == set(deployment.apps)
    assert {"scheduler", COLLECTOR} <= set(deployment.files)


def test_an_account_holds_one_set_of_secrets():
    """Processes may share an account only if they read the same secrets; otherwise the
    account would hold the union."""
    by_account: dict[str, set[frozenset[str]]] = {}
    for stem, account in ACCOUNT_OF.items():
        by_account.setdefault(account, set()).add(frozenset(SECRETS_BY_PROCESS[stem]))
    assert {account for account, sets in by_account.items() if len(sets) > 1} == set()


def _ignore_patterns(name: str) -> set[str]:
    return {
        line.strip() for line in (ROOT / name).read_text().splitlines() if line.strip()[:1] not in ("", "#")
    }


def test_no_local_secret_leaves_the_machine():
    """`gcloud builds submit` uploads the checkout minus what .gcloudignore lists (and, while
    that file exists, minus nothing else): at least everything the image leaves out. Git
    keeps the local .env files out of commits the same way."""
    assert _ignore_patterns(".dockerignore") - _ignore_patterns(".gcloudignore") == set()
    assert {".env", ".env.*", "!.env.example"} <= _ignore_patterns(".gitignore")


def test_settings_parser_finds_the_required_variables():
    assert "SECRET_KEY" in required_by_settings()
    assert required_by_settings(
        'X = env("NEW_REQUIRED")\nif not X:\n    raise ImproperlyConfigured("x")\nY = env("OPTIONAL", "d")\n'
    ) == {"NEW_REQUIRED"}


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("sed") is None, reason="needs bash and sed")
def test_build_deploys_the_image_it_built_into_every_file(deployment, tmp_path):
    values = build_values(deployment)
    tag = next(arg for arg in steps(deployment)["build"]["args"] if arg.startswith("--tag="))
    built = substitute(tag.removeprefix("--tag="), values)
    pushed = substitute(steps(deployment)["push"]["args"][1], values)
    listed = [substitute(image, values) for image in deployment.cloudbuild["images"]]
    assert built == pushed and listed == [built]
    assert built.endswith(":" + BUILT_IN["COMMIT_SHA"])

    rendered = render(deployment, tmp_path)
    deployed = {file for _, file in deploy_steps(deployment).values()}
    assert deployed == set(deployment.apps) and deployed <= set(rendered)
    for stem, text in rendered.items():
        assert not PLACEHOLDER.search(text), f"{stem}: placeholders left after rendering"
    for stem in deployment.apps:
        doc = yaml.safe_load(rendered[stem])
        assert app_container(doc)["image"] == built, stem
        assert plain(doc, "RELEASE") == BUILT_IN["COMMIT_SHA"], stem
        # No _PUBLIC_HOST given: the web service's own address on Cloud Run.
        own = f"{values['_SERVICE']}-web-{values['PROJECT_NUMBER']}.{values['_REGION']}.run.app"
        assert plain(doc, "PUBLIC_BASE_URL") == f"https://{own}", stem


@pytest.mark.parametrize(
    ("cron", "minutes"),
    [
        ("* * * * *", 1),
        ("*/5 * * * *", 5),
        ("7 * * * *", 60),
        ("0 */6 * * *", 360),
        ("15 3 * * *", 1440),
        ("*/7 * * * *", None),  # not a fixed period: 7 does not divide an hour
        ("0 9 * * 1", None),
    ],
)
def test_cron_periods_are_read(cron, minutes):
    assert cron_period_minutes(cron) == minutes


@pytest.mark.parametrize(
    ("schedule", "minutes"),
    [(5.0, 1), (60.0, 1), (61, 2), (300.0, 5), (3600.0, 60), (86400, 1440), (timedelta(hours=6), 360)],
)
def test_beat_periods_round_up_to_whole_minutes(schedule, minutes):
    assert scheduled_minutes({"task": "t", "schedule": schedule}) == minutes


def test_a_crontab_entry_must_be_mapped_by_hand():
    from celery.schedules import crontab

    assert scheduled_minutes({"task": "t", "schedule": crontab(minute=0, hour=4)}) is None


def test_switching_to_cloud_scheduler_passes(deployment):
    """The documented switch (docs/deploy.md): PERIODIC_INVOKER set and beat at 0, together."""
    switched = copy.deepcopy(deployment)
    _add_env(switched, "web", {"name": "PERIODIC_INVOKER", "value": SCHEDULER_ACCOUNT})
    _scale_beat(switched, "0")
    assert check_periodic_trigger(switched) == []
    assert check_names_are_read(switched) == []
    assert check_plain_values(switched) == []


def test_a_server_held_key_for_the_etl_worker_passes(deployment):
    """An operator's ETL_SOURCE_KEY__<schema>__<name> goes to web and the ETL worker, and
    to their accounts."""
    with_key = copy.deepcopy(deployment)
    name = "ETL_SOURCE_KEY__ORG_ACME__WEATHER"
    for stem in SERVER_KEY_PROCESSES:
        _add_env(with_key, stem, _secret_env(name))
    with_key.deploy_doc += "".join(
        f"\ngrant {ACCOUNT_OF[stem]} {secret_of(name).removeprefix('__SERVICE__-')}\n"
        for stem in SERVER_KEY_PROCESSES
    )
    assert check_least_privilege(with_key) == []
    assert check_secrets(with_key) == []
    assert check_docs_grant_what_each_reads(with_key) == []


# --- Each check can fail -------------------------------------------------------------------


def _env_entry(deployment: Deployment, stem: str, name: str) -> dict:
    return env_of(app_container(deployment.files[stem]))[name]


def _remove_env(deployment: Deployment, stem: str, name: str) -> None:
    container = app_container(deployment.files[stem])
    container["env"] = [entry for entry in container["env"] if entry["name"] != name]


def _add_env(deployment: Deployment, stem: str, entry: dict) -> None:
    app_container(deployment.files[stem])["env"].append(entry)


def _set_args(deployment: Deployment, stem: str, old: str, new: str) -> None:
    container = app_container(deployment.files[stem])
    container["args"] = [new if arg == old else arg for arg in container["args"]]


def _scale_beat(deployment: Deployment, count: str) -> None:
    deployment.files["beat"]["metadata"]["annotations"]["run.googleapis.com/manualInstanceCount"] = count


def _job(deployment: Deployment, entry: str) -> dict:
    return next(job for job in deployment.scheduler_jobs if job["httpTarget"]["uri"].endswith(f"/{entry}"))


def _scrape(deployment: Deployment) -> dict:
    return deployment.collector["receivers"]["prometheus"]["config"]["scrape_configs"][0]


def _collector_of(deployment: Deployment, stem: str) -> dict:
    return sidecars(deployment.files[stem])[0]


def _volume(deployment: Deployment, stem: str, name: str) -> dict:
    return next(v for v in pod_spec(deployment.files[stem])["volumes"] if v["name"] == name)


def _secret_env(name: str) -> dict:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret_of(name), "key": "latest"}}}


def _mount_secret(deployment: Deployment, stem: str, secret: str) -> None:
    pod_spec(deployment.files[stem])["volumes"].append(
        {"name": "extra", "secret": {"secretName": secret, "items": [{"key": "latest", "path": "value"}]}}
    )


MISTAKES: dict[str, tuple[Callable[[Deployment], None], Callable[[Deployment], list[str]]]] = {
    "beat without SECRET_KEY": (lambda d: _remove_env(d, "beat", "SECRET_KEY"), check_required),
    "the webhooks worker without the encryption keys": (
        lambda d: _remove_env(d, "worker-webhooks", "ENCRYPTION_KEYS"),
        check_required,
    ),
    "beat given the Stripe key": (
        lambda d: _add_env(d, "beat", _secret_env("STRIPE_SECRET_KEY")),
        check_least_privilege,
    ),
    "the Gemini key on the ETL worker": (
        lambda d: _add_env(d, "worker-etl", _secret_env("GEMINI_API_KEY")),
        check_least_privilege,
    ),
    "the encryption keys on the audits worker": (
        lambda d: _add_env(d, "worker-audits", _secret_env("ENCRYPTION_KEYS")),
        check_least_privilege,
    ),
    "the audits worker without the Gemini key": (
        lambda d: _remove_env(d, "worker-audits", "GEMINI_API_KEY"),
        check_required,
    ),
    "the Stripe key mounted as a file into the jobs worker": (
        lambda d: _mount_secret(d, "worker-jobs", secret_of("STRIPE_SECRET_KEY")),
        check_least_privilege,
    ),
    "a server-held data-source key on the jobs worker": (
        lambda d: _add_env(d, "worker-jobs", _secret_env("ETL_SOURCE_KEY__ORG_ACME__WEATHER")),
        check_least_privilege,
    ),
    "the docs grant the jobs worker the Stripe key": (
        lambda d: setattr(d, "deploy_doc", d.deploy_doc + "\ngrant jobs stripe-secret-key\n"),
        check_docs_grant_what_each_reads,
    ),
    "the docs grant beat's secrets to an account no process runs as": (
        lambda d: setattr(d, "deploy_doc", re.sub(r"(?m)^grant beat ", "grant worker ", d.deploy_doc)),
        check_docs_grant_what_each_reads,
    ),
    "a Gemini key pasted into a file": (
        lambda d: _env_entry(d, "worker-jobs", "GEMINI_API_KEY").update(
            {"value": "AIzaSyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUvW"}
        ),
        check_secrets,
    ),
    "a Stripe key as a plain value": (
        lambda d: _add_env(d, "web", {"name": "STRIPE_API_BASE", "value": "sk_live_51HqLyjWDarjtT1zdp7dc"}),
        check_plain_values,
    ),
    "a random token as a plain value": (
        lambda d: _add_env(d, "web", {"name": "CACHE_KEY_PREFIX", "value": "q8Zk3vR1xW9pL2mN7bT5yC4hJ6"}),
        check_plain_values,
    ),
    "a misspelt variable": (
        lambda d: _add_env(d, "worker-etl", {"name": "ETL_SLICE_SECOND", "value": "60"}),
        check_names_are_read,
    ),
    "beat on another bucket": (
        lambda d: _env_entry(d, "beat", "FILE_STORAGE_BUCKET").update({"value": "other-bucket"}),
        check_shared_settings,
    ),
    "a worker without Cloud SQL": (
        lambda d: revision_annotations(d.files["worker-webhooks"]).pop(
            "run.googleapis.com/cloudsql-instances"
        ),
        check_identity_and_network,
    ),
    "a worker on a misspelt queue": (lambda d: _set_args(d, "worker-jobs", "jobs", "job"), check_workers),
    "a worker as a throttled service": (
        lambda d: d.files["worker-etl"].update({"kind": "Service"}),
        check_workers,
    ),
    "two beats": (
        lambda d: d.files["beat"]["metadata"]["annotations"].update(
            {"run.googleapis.com/manualInstanceCount": "2"}
        ),
        check_periodic_trigger,
    ),
    "beat and Cloud Scheduler both": (
        lambda d: _add_env(d, "web", {"name": "PERIODIC_INVOKER", "value": SCHEDULER_ACCOUNT}),
        check_periodic_trigger,
    ),
    "beat stopped with nothing in its place": (
        lambda d: _scale_beat(d, "0"),
        check_periodic_trigger,
    ),
    "a scheduler job signed for its own URL": (
        lambda d: _job(d, "jobs-sweep")["httpTarget"]["oidcToken"].update(
            {"audience": "https://__PUBLIC_HOST__/internal/periodic/jobs-sweep"}
        ),
        check_scheduler,
    ),
    "a schedule entry without its job": (
        lambda d: d.scheduler_jobs.remove(_job(d, "purge-idempotency-keys")),
        check_scheduler,
    ),
    "a job for an entry beat does not have": (
        lambda d: _job(d, "etl-sweep")["httpTarget"].update(
            {"uri": "https://__PUBLIC_HOST__/internal/periodic/etl-report"}
        ),
        check_scheduler,
    ),
    "a sweep every five minutes": (
        lambda d: _job(d, "jobs-sweep").update({"schedule": "*/5 * * * *"}),
        check_scheduler,
    ),
    "a daily entry run every hour": (
        lambda d: _job(d, "flush-expired-tokens").update({"schedule": "15 * * * *"}),
        check_scheduler,
    ),
    "web without the metrics token": (lambda d: _remove_env(d, "web", "METRICS_TOKEN"), check_metrics),
    "a worker opened to an address as well": (
        lambda d: _add_env(d, "worker-jobs", {"name": "METRICS_ALLOWED_IPS", "value": "127.0.0.1/32"}),
        check_metrics,
    ),
    "a scrape without the token": (
        lambda d: _scrape(d).pop("authorization"),
        check_metrics,
    ),
    "the scrape under another job name": (
        lambda d: _scrape(d).update({"job_name": "nexus-web"}),
        check_metrics,
    ),
    "a collector without the token file": (
        lambda d: _collector_of(d, "worker-etl").update(
            {
                "volumeMounts": [
                    m for m in _collector_of(d, "worker-etl")["volumeMounts"] if m["name"] != "metrics-token"
                ]
            }
        ),
        check_metrics,
    ),
    "a collector reading another configuration": (
        lambda d: _volume(d, "web", "otel-collector-config")["secret"].update(
            {"secretName": "__SERVICE__-collector-config"}
        ),
        check_metrics,
    ),
    "two processes in one namespace": (
        lambda d: env_of(_collector_of(d, "worker-webhooks"))["OTEL_RESOURCE_ATTRIBUTES"].update(
            {"value": "location=__REGION__,namespace=__SERVICE__-web"}
        ),
        check_metrics,
    ),
    "web refusing the collector's Host": (
        lambda d: _env_entry(d, "web", "ALLOWED_HOSTS").update({"value": "__PUBLIC_HOST__"}),
        check_metrics,
    ),
    "web answering any Host": (
        lambda d: _env_entry(d, "web", "ALLOWED_HOSTS").update(
            {"value": "__PUBLIC_HOST__,localhost,0.0.0.0"}
        ),
        check_metrics,
    ),
    "a worker's metrics on another port": (
        lambda d: _env_entry(d, "worker-periodic", "WORKER_METRICS_PORT").update({"value": "9808"}),
        check_metrics,
    ),
    "a variable the collector does not read": (
        lambda d: env_of(_collector_of(d, "web"))["OTEL_RESOURCE_ATTRIBUTES"].update(
            {"name": "OTEL_RESOURCE_ATTRIBUTE"}
        ),
        check_names_are_read,
    ),
    "web deployed before the collector's configuration": (
        lambda d: steps(d)["web"].update({"waitFor": ["migrate"]}),
        check_build_order,
    ),
    "web deployed before the migrations": (
        lambda d: steps(d)["web"].update({"waitFor": ["push", "render"]}),
        check_build_order,
    ),
    "a misspelt substitution": (
        lambda d: steps(d)["beat"].update({"env": ["CLOUDSDK_RUN_REGION=${_REGON}"]}),
        check_build_order,
    ),
}


@pytest.mark.parametrize("mistake", MISTAKES, ids=list(MISTAKES))
def test_each_check_catches_its_mistake(deployment, mistake):
    broken = copy.deepcopy(deployment)
    make, check = MISTAKES[mistake]
    make(broken)
    assert check(broken), f"{check.__name__} did not notice {mistake!r}"


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("sed") is None, reason="needs bash and sed")
def test_render_refuses_a_placeholder_it_does_not_know(deployment, tmp_path):
    source = tmp_path / "source"
    shutil.copytree(ROOT / CLOUDRUN, source / CLOUDRUN)
    beat = source / CLOUDRUN / "beat.yaml"
    beat.write_text(beat.read_text().replace(IMAGE, "__IMAGE_TAG__"))
    broken = Deployment(
        root=source,
        files=deployment.files,
        cloudbuild=deployment.cloudbuild,
        deploy_doc=deployment.deploy_doc,
    )
    with pytest.raises(subprocess.CalledProcessError) as failure:
        render(broken, tmp_path / "out")
    assert "__IMAGE_TAG__" in failure.value.stdout
