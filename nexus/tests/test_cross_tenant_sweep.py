"""The cross-tenant sweep: every route of the URL configuration, called by organisation A
with organisation B's objects, answers as if they did not exist, and every list shows A
nothing of B's.

The routes are read from the resolver, not written down here: a route with no entry in
CASES fails `test_every_route_has_a_case` until someone decides how it is checked, so a
new route cannot quietly skip the question "what if the id is another organisation's?".

Adding a case is one line in CASES, keyed by the route's pattern with "<version>" for the
API version, e.g. `"api/<version>/jobs/<uuid:job_id>"` or `"webhooks/<uuid:endpoint_id>"`
(the failure message prints the key and the line to start from):

- `ById(<path parameter>="<kind>", ...)` for a route that takes an object id: every method
  answers 404 (the envelope's NOT_FOUND, or the 404 page) for B's object, exactly as for
  an id that exists nowhere, and B's rows are unchanged afterwards. The kinds are the keys
  of `Seeded.ids` (member, job, endpoint, delivery, source, run, record, ...); a new kind
  is added in `_seed`. `body=` gives the request body (a dict, or a tuple of dicts to try
  each, e.g. every action of a form), `format="multipart"` sends it as a form upload, and
  page views (plain functions) name the methods they serve with `methods="POST"`.
- `Lists("<kind>", ...)` for a route that lists or shows the organisation's things:
  answered for A it shows A's objects of those kinds and none of B's ids or texts.
  `queries=` adds query strings that name objects (`"source={source}"`), tried with A's
  objects (must work) and with B's (must be a 404 or show nothing of B).
- `Refers(<body field>="<kind>")` for a POST whose body names an object: B's is a 404.
- `NoIds("<why>")` for a route that takes no id and shows no organisation's objects.
- `PlatformName(<path parameter>="<what it names>", reason=...)` for a route whose path
  parameter names a platform thing, the same for every organisation, never an
  organisation's object (an entry of beat's schedule).

Django's admin (checked separately: staff only) and allauth's sign-in views (public
schema, keyed by the caller's own sign-in state) are outside the table.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.apps import apps
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.utils import timezone
from django_tenants.utils import tenant_context
from rest_framework.test import APIClient

from audits.models import Audit, AuditItem
from billing.models import Purchase
from billing.services import credits_grant
from etl.models import DataSource, DriftEvent, EtlRun, QuarantinedItem, Record
from jobs.models import Job
from jobs.services import job_create
from tenants.models import Organisation, User
from tenants.services.invitations import invitation_create
from tenants.services.keys import api_key_create
from tenants.tests.helpers import bearer_for
from webhooks.models import WebhookNotice
from webhooks.services import webhook_endpoint_create, webhook_send_test

pytestmark = pytest.mark.django_db

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


# --- The table of cases ------------------------------------------------------------------------


class ById:
    """A route addressing objects through its path: `ById(job_id="job")`."""

    def __init__(
        self, *, methods: str = "", body: dict | tuple[dict, ...] = (), format: str = "json", **params
    ):
        self.params: dict[str, str] = params  # path parameter -> kind of object
        self.methods = frozenset(methods.split())  # what a page view serves (API views say it)
        self.bodies: tuple[dict, ...] = (body if isinstance(body, tuple) else (body,)) or ({},)
        self.format = format


class Lists:
    """A route showing the organisation's things: A's of `kinds`, none of B's."""

    def __init__(self, *kinds: str, queries: tuple[str, ...] = ("",), check: Callable | None = None):
        self.kinds = kinds
        self.queries = queries
        self.check = check  # check(response, a): what the answer must say of A's own


class Refers:
    """A POST whose body names an object: `Refers(record_id="record")`."""

    def __init__(self, **fields: str):
        self.fields = fields


class NoIds:
    """A route that takes no object id and shows no organisation's objects."""

    def __init__(self, reason: str):
        self.reason = reason


class PlatformName:
    """A route whose path parameters name something of the platform, the same for every
    organisation (an entry of beat's schedule), never an organisation's object:
    `PlatformName(entry="a periodic task", reason=...)`."""

    def __init__(self, *, reason: str, **params: str):
        self.params = params
        self.reason = reason


class SignedLink:
    """A route whose path parameter is a signed capability sent by email (an invitation's
    link): whoever holds the link may open it, so it names no caller's objects; what must
    hold is that it cannot be forged from an id. `SignedLink(token="invitation", reason=...)`:
    the other organisation's invitation id, bare or with a tampered signature, is a 404."""

    def __init__(self, *, reason: str, **params: str):
        self.params = params
        self.reason = reason


def _usage_counts_only_a(response, a: Seeded) -> None:
    data = response.json()["data"]
    assert sum(data["jobs_by_type"].values()) == len(a.jobs), data
    assert sum(day["credits"] for day in data["credits_spent_per_day"]) == a.spent, data


def _history_rows_are_a_jobs(response, a: Seeded) -> None:
    # The history names no job by id or text: its rows are counted (B has more jobs than A).
    history = response.content.decode().split('id="job-history"')[1]
    assert history.count('class="status-') == len(a.jobs), history


V = "api/<version>/"
# For an upload route: ById(source_id="source", body=CSV_UPLOAD, format="multipart").
CSV_UPLOAD = {"file": SimpleUploadedFile("feed.csv", b"id,title\n1,x\n", content_type="text/csv")}
WEBHOOK_ACTIONS = tuple(
    {"action": action, "confirmed": action} for action in ("rotate", "test", "enable", "disable", "delete")
)
# Cancel unconfirmed too: the question page must not be asked about another's audit.
AUDIT_ACTIONS = (
    {"action": "cancel"},
    *({"action": action, "confirmed": action} for action in ("pause", "resume", "cancel")),
)

CASES: dict[str, ById | Lists | Refers | NoIds | PlatformName | SignedLink] = {
    # API, both versions ("<version>" is each of them).
    V + "auth/token": NoIds("exchanges the caller's own session for tokens"),
    V + "auth/refresh": NoIds("rotates the caller's own refresh cookie"),
    V + "auth/logout": NoIds("revokes the caller's own refresh cookie"),
    V + "auth/logout-all": NoIds("revokes the caller's own tokens and sessions"),
    V + "auth/me": Lists("me", "org"),
    V + "org": Lists("org"),
    V + "org/members": Lists("member"),
    V + "org/leave": NoIds("the caller leaves their own organisation"),
    V + "api-keys": Lists("api_key"),
    V + "api-keys/<uuid:key_id>": ById(key_id="api_key"),
    V + "invitations": Lists("invitation"),
    V + "invitations/<uuid:invitation_id>": ById(invitation_id="invitation"),
    V + "invitations/<uuid:invitation_id>/resend": ById(invitation_id="invitation"),
    V + "audit-log": Lists("audit_event", queries=("", "target={api_key}", "action=api_key.*")),
    V + "audit-log/export.csv": Lists("audit_event", queries=("", "target={api_key}")),
    V + "org/members/<uuid:member_id>": ById(member_id="member", body={"role": "admin"}),
    V + "credits": Lists("credit"),
    V + "credits/transactions": Lists("credit"),
    V + "billing/packs": Lists(),  # the shared catalogue: nothing of any organisation's
    V + "billing/checkout": NoIds("buys a pack of the shared catalogue for the caller's organisation"),
    V + "billing/purchases": Lists("purchase"),
    V + "summarize": Refers(record_id="record"),
    V + "analyze": Refers(record_id="record"),
    V + "jobs": Lists("job"),
    V + "jobs/<uuid:job_id>": ById(job_id="job"),
    V + "jobs/<uuid:job_id>/events": ById(job_id="job"),
    V + "analytics/usage": Lists(check=_usage_counts_only_a),
    V + "webhooks": Lists("endpoint"),
    V + "webhooks/event-types": Lists(),  # the shared event catalogue: nothing of any organisation's
    V + "webhooks/deliveries/<str:delivery_id>/redeliver": ById(delivery_id="delivery"),
    V + "webhooks/<uuid:endpoint_id>": ById(endpoint_id="endpoint", body={"active": False}),
    V + "webhooks/<uuid:endpoint_id>/rotate-secret": ById(endpoint_id="endpoint"),
    V + "webhooks/<uuid:endpoint_id>/test": ById(endpoint_id="endpoint"),
    V + "webhooks/<uuid:endpoint_id>/deliveries": ById(endpoint_id="endpoint"),
    V + "etl/sources": Lists("source"),
    V + "etl/sources/<uuid:source_id>": ById(
        source_id="source", body={"name": "Taken over", "enabled": False}
    ),
    V + "etl/sources/<uuid:source_id>/run": ById(source_id="source"),
    V + "etl/sources/<uuid:source_id>/file": ById(source_id="source", body=CSV_UPLOAD, format="multipart"),
    V + "etl/runs": Lists("run", queries=("", "source={source}")),
    V + "etl/runs/compare": Lists("run", queries=("source={source}", "a={run2}&b={run}")),
    V + "etl/runs/<uuid:run_id>": ById(run_id="run"),
    V + "etl/stats": Lists("source"),
    V + "data": Lists("record", queries=("", "source={source}")),
    # POST /audits naming another organisation's data source: audits/tests/test_api.py.
    V + "audits": Lists("audit"),
    V + "audits/<uuid:audit_id>": ById(audit_id="audit"),
    V + "audits/<uuid:audit_id>/items": ById(audit_id="audit"),
    V + "audits/<uuid:audit_id>/pause": ById(audit_id="audit"),
    V + "audits/<uuid:audit_id>/resume": ById(audit_id="audit"),
    V + "audits/<uuid:audit_id>/cancel": ById(audit_id="audit"),
    V + "audits/<uuid:audit_id>/results.csv": ById(audit_id="audit"),
    # Public and platform routes.
    "health": NoIds("service status for load balancers; names no organisation's objects"),
    "metrics": NoIds("operators' counters; names no organisation's objects"),
    "stripe/webhook": NoIds("Stripe's signed events; the signature, not the caller, names the purchase"),
    "internal/periodic/<slug:entry>": PlatformName(
        entry="an entry of beat's schedule", reason="Cloud Scheduler's trigger; runs a platform task for all"
    ),
    "auth/login": NoIds("starts Google sign-in"),
    "admin/login/": NoIds("sends operators to the throttled sign-in form"),
    "admin/operations/": NoIds(
        "staff only (admin_view): an organisation's caller is sent to the admin sign-in"
    ),
    "auth/callback": NoIds("ends Google sign-in"),
    "api/schema/": NoIds("the v1 OpenAPI document"),
    "api/schema/v2/": NoIds("the v2 OpenAPI document"),
    "api/docs/": NoIds("Swagger UI for v1"),
    "api/docs/v2/": NoIds("Swagger UI for v2"),
    "api/": NoIds("the JSON 404 for unknown API paths"),
    # Pages (session sign-in).
    "": Lists("credit", "notice"),
    "partials/balance": Lists("balance"),
    "jobs": Lists(queries=("", "job={job}"), check=_history_rows_are_a_jobs),
    "jobs/submit": NoIds("creates a job from the submitted text"),
    "jobs/<uuid:job_id>/result": ById(job_id="job", methods="GET"),
    "billing": Lists("purchase"),
    "billing/buy": NoIds("buys a pack of the shared catalogue for the caller's organisation"),
    "members": Lists("member"),
    "members/<uuid:member_id>": ById(
        member_id="member",
        methods="POST",
        body=({"role": "admin"}, {"action": "remove"}, {"action": "remove", "confirmed": "remove"}),
    ),
    "api-access": Lists(),
    "api-keys": Lists("api_key"),
    "api-keys/create": NoIds("creates a key in the caller's organisation"),
    "api-keys/<uuid:key_id>/revoke": ById(
        key_id="api_key", methods="POST", body=({}, {"action": "revoke", "confirmed": "revoke"})
    ),
    "members/invite": NoIds("invites an address to the caller's organisation"),
    "members/invitations/<uuid:invitation_id>/action": ById(
        invitation_id="invitation", methods="POST", body=({"action": "resend"}, {"action": "revoke"})
    ),
    "members/settings": NoIds("changes the caller's organisation's own setting"),
    "members/leave": NoIds("the caller leaves their own organisation"),
    "invitations/<str:token>": SignedLink(token="invitation", reason="the emailed invitation link"),
    "invitations/<str:token>/google": SignedLink(
        token="invitation", reason="the emailed link, on its way through Google's sign-in"
    ),
    # The page's filter form shows the filter it was given, whatever it names: unfiltered only.
    "audit-log": Lists("audit_event"),
    "audit-log.csv": Lists("audit_event", queries=("", "target={api_key}")),
    "webhooks": Lists("endpoint"),
    "webhooks/create": NoIds("registers an endpoint in the caller's organisation"),
    "account/sign-out-everywhere": NoIds("ends the caller's own sessions and tokens"),
    "webhooks/<uuid:endpoint_id>": ById(endpoint_id="endpoint", methods="GET"),
    "webhooks/<uuid:endpoint_id>/action": ById(endpoint_id="endpoint", methods="POST", body=WEBHOOK_ACTIONS),
    "webhooks/deliveries/<str:delivery_id>/redeliver": ById(delivery_id="delivery", methods="POST"),
    "webhooks/notices/<uuid:notice_id>/dismiss": ById(notice_id="notice", methods="POST"),
    "data": Lists("source", "record"),  # its runs are shown by their source's name
    "data/sources/<uuid:source_id>/run": ById(source_id="source", methods="POST"),
    "data/sources/new": NoIds("adds a source to the caller's organisation"),
    "data/sources/<uuid:source_id>/edit": ById(
        source_id="source", methods="GET POST", body={"name": "Taken over", "kind": "csv", "enabled": ""}
    ),
    "data/sources/<uuid:source_id>/file": ById(source_id="source", methods="POST", body=CSV_UPLOAD),
    "data/records/<int:record_id>/job": ById(
        record_id="record", methods="POST", body={"job_type": "summarize"}
    ),
    "audits": Lists("audit"),  # its POST starts an audit from an upload: names no object
    "audits/<uuid:audit_id>": ById(audit_id="audit", methods="GET"),
    "audits/<uuid:audit_id>/progress": ById(audit_id="audit", methods="GET"),
    "audits/<uuid:audit_id>/action": ById(audit_id="audit", methods="POST", body=AUDIT_ACTIONS),
    "audits/<uuid:audit_id>/results.csv": ById(audit_id="audit", methods="GET"),
}


# --- Routes, read from the resolver ------------------------------------------------------------

_VERSION_GROUP = re.compile(r"\(\?P<version>([^)]*)\)")
_REGEX_GROUP = re.compile(r"\(\?P<(\w+)>[^)]*\)")
_ROUTE_PARAM = re.compile(r"<(?:(\w+):)?(\w+)>")


@dataclass(frozen=True)
class Route:
    key: str  # "api/<version>/jobs/<uuid:job_id>": the key of its case
    callback: Callable
    namespace: str
    versions: tuple[str, ...]  # what <version> stands for; ("",) when it has none

    @property
    def params(self) -> dict[str, str]:
        """Path parameters (other than the API version) and their converters."""
        return {name: conv or "str" for conv, name in _ROUTE_PARAM.findall(self.key) if name != "version"}

    @property
    def is_api(self) -> bool:
        return self.key.startswith("api/")

    def url(self, version: str, values: dict[str, Any], query: str = "") -> str:
        path = "/" + self.key.replace("<version>", version)
        path = _ROUTE_PARAM.sub(lambda m: str(values[m.group(2)]), path)
        return f"{path}?{query}" if query else path

    def served_methods(self, case: ById) -> set[str]:
        view_class = getattr(self.callback, "cls", None) or getattr(self.callback, "view_class", None)
        if view_class is not None:
            return {m.upper() for m in view_class.http_method_names if hasattr(view_class, m)} & set(METHODS)
        assert case.methods, f"{self.key}: a page view names the methods it serves: ById(..., methods='POST')"
        return set(case.methods)


def _pattern_text(pattern) -> tuple[str, tuple[str, ...]]:
    text = str(pattern).removeprefix("^").removesuffix("$")
    versions: tuple[str, ...] = ()
    found = _VERSION_GROUP.search(text)
    if found:
        versions = tuple(found.group(1).split("|"))
        text = _VERSION_GROUP.sub("<version>", text)
    return _REGEX_GROUP.sub(lambda m: f"<{m.group(1)}>", text), versions


def all_routes(resolver: URLResolver | None = None, prefix: str = "", namespace: str = "", versions=()):
    """Every route of the URLconf, through every include."""
    for entry in (resolver or get_resolver()).url_patterns:
        text, found = _pattern_text(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from all_routes(entry, prefix + text, entry.namespace or namespace, found or versions)
        elif isinstance(entry, URLPattern):
            yield Route(prefix + text, entry.callback, namespace, tuple(found or versions) or ("",))


def _outside_the_table(route: Route) -> bool:
    """Django's admin (test_the_django_admin_is_for_staff_only) and allauth's own views."""
    return route.namespace == "admin" or route.callback.__module__.startswith("allauth.")


def _swept_routes() -> list[Route]:
    return [r for r in all_routes() if not _outside_the_table(r)]


def _cases_of(kind: type) -> list[tuple[Route, Any]]:
    return [(r, CASES[r.key]) for r in _swept_routes() if isinstance(CASES.get(r.key), kind)]


# --- Both organisations' objects ---------------------------------------------------------------


@dataclass
class Seeded:
    """One organisation's objects of every kind: `ids` go into URLs, `shown` are strings an
    answer contains when it shows that kind, `tokens` all strings only this organisation's
    data contains (ids and texts)."""

    org: Organisation
    ids: dict[str, Any]
    shown: dict[str, set[str]]
    tokens: set[str] = field(default_factory=set)
    jobs: list = field(default_factory=list)
    spent: int = 0


def _seed(org: Organisation, admin: User, member: User, *, name: str, grant: int, job_count: int) -> Seeded:
    marker = f"{name}-{uuid.uuid4().hex[:8]}"  # unique per test: no cache hit, no stale match
    now = timezone.now()
    with tenant_context(org):
        credit = credits_grant(amount=grant, reason=f"{marker} grant", actor_label="operator:tests")
        jobs = [
            job_create(user=member, job_type="summarize", text=f"{marker} job {n}. Some text.")
            for n in range(job_count)
        ]
        endpoint, _ = webhook_endpoint_create(
            url=f"http://127.0.0.1:9/{marker}", event_types=["job.completed"], description=f"{marker} hook"
        )
        delivery = webhook_send_test(endpoint=endpoint)
        notice = WebhookNotice.objects.create(
            endpoint=endpoint, kind="failing", message=f"{marker} receiver down"
        )
        purchase = Purchase.objects.create(
            pack_id=uuid.uuid4(),
            pack_name=f"{marker} pack",
            credits=100,
            amount_cents=500,
            currency="eur",
            created_by_id=admin.pk,
        )
        # Written directly: the sweep needs the rows, not a run of the pipeline.
        source = DataSource.objects.create(
            name=f"{marker} source",
            kind="csv",
            config={"url": f"https://{marker}.example/feed.csv"},
            field_mapping={"external_id": "id", "title": "title"},
            required_fields=["external_id"],
        )
        run2, run = (
            EtlRun.objects.create(
                source=source, trigger="manual", status="succeeded", finished_at=now, fetched=n, duration_ms=5
            )
            for n in (1, 2)
        )
        # Record ids are per schema: B's is far from any id A's sequence hands out, so "not
        # found" means "not A's", never "A has a record with that number too".
        record = Record.objects.create(
            pk=10**12 + uuid.uuid4().int % 10**6 if name == "bravo" else None,
            source=source,
            external_id=f"{marker}-record",
            title=f"{marker} record",
            body="Body text.",
            content_hash="0" * 40,
            published_at=now,
            first_seen_run=run,
            last_updated_run=run,
        )
        DriftEvent.objects.create(run=run, source=source, kind="new", field=f"{marker}_field", message=marker)
        QuarantinedItem.objects.create(
            source=source,
            run=run,
            external_id=f"{marker}-bad",
            payload={"id": marker},
            reason=f"{marker} bad",
        )
        # Written directly, like the records: a running audit with one flagged item.
        audit = Audit.objects.create(
            status="running",
            input_kind="csv",
            input_name=f"{marker}.csv",
            criteria=f"{marker} criteria",
            provider="local",
            model="local",
            batch_size=20,
            price_per_item=1,
            total=2,
            done=1,
            flagged=1,
            created_by=member,
            actor_label=f"user:{member.email}",
        )
        AuditItem.objects.create(
            audit=audit,
            seq=1,
            external_id=f"{marker}-item",
            text=f"{marker} item",
            status="evaluated",
            flagged=True,
            reason=f"{marker} reason",
        )
        AuditItem.objects.create(
            audit=audit, seq=2, external_id=f"{marker}-pending", text=f"{marker} pending"
        )
        balance = grant - sum(job.cost for job in jobs)
    api_key, _secret = api_key_create(org=org, created_by=admin, name=f"{marker}-key", scopes=["jobs:read"])
    invitation = invitation_create(
        org=org, invited_by=admin, email=f"{marker}@invitee.example", role="member"
    )
    ids = {
        "member": member.pk,
        "job": jobs[0].pk,
        "endpoint": endpoint.pk,
        "delivery": delivery.pk,
        "notice": notice.pk,
        "purchase": purchase.pk,
        "source": source.pk,
        "run": run.pk,
        "run2": run2.pk,
        "record": record.pk,
        "credit": credit.pk,
        "audit": audit.pk,
        "api_key": api_key.pk,
        "invitation": invitation.pk,
    }
    shown = {
        "me": {str(admin.pk)},
        "org": {str(org.pk)},
        "member": {str(member.pk), member.email},
        "job": {str(jobs[0].pk), jobs[0].text},
        "endpoint": {str(endpoint.pk), endpoint.url},
        "notice": {str(notice.pk), notice.message},
        "purchase": {str(purchase.pk), purchase.pack_name},
        "source": {str(source.pk), source.name},
        "run": {str(run.pk)},
        "record": {record.title},
        "credit": {str(credit.pk), credit.reference},
        "audit": {str(audit.pk), audit.criteria},
        "balance": {f"<span data-balance>{balance}</span>"},
        "api_key": {str(api_key.pk), api_key.name},
        "invitation": {str(invitation.pk), invitation.email},
        # The audit log names what was changed: this organisation's key, by its name.
        "audit_event": {f"{api_key.name} ({api_key.prefix})"},
    }
    tokens = {marker, org.email_domain, str(org.pk), str(admin.pk), str(delivery.pk), str(run2.pk)}
    tokens |= {str(job.pk) for job in jobs}
    tokens |= set().union(*shown.values())
    return Seeded(org, ids, shown, tokens, jobs, grant - balance)


@pytest.fixture
def sweep(world):
    """(A, B): both organisations seeded; B with other amounts, so no count can pass by chance."""
    a = _seed(world.org_a, world.admin_a, world.member_a, name="alpha", grant=300, job_count=1)
    b = _seed(world.org_b, world.admin_b, world.member_b, name="bravo", grant=700, job_count=2)
    b.tokens |= {str(world.member_b.pk), str(world.admin_b.pk)}
    assert not a.tokens & b.tokens
    return a, b


@pytest.fixture
def callers(world):
    """Organisation A's admin: with a token for the API, a session for the pages."""
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {bearer_for(world.admin_a)}")
    page = Client()
    page.force_login(world.admin_a)
    return {True: api, False: page}


def _unknown_like(value: Any) -> Any:
    """An id of the same type as `value` that exists in no organisation."""
    if isinstance(value, int):
        return 10**15
    if isinstance(value, uuid.UUID):
        return uuid.uuid4()
    return f"msg_{uuid.uuid4().hex}"


def _snapshot(b: Seeded) -> dict[str, list]:
    """Every row of B's schema, and B's organisation and users in the public schema."""
    tenant_apps = [c for c in apps.get_app_configs() if c.name in settings.TENANT_APPS]
    rows: dict[str, list] = {}
    with tenant_context(b.org):
        for app_config in tenant_apps:
            for model in app_config.get_models():
                rows[model._meta.label] = list(model._default_manager.order_by("pk").values())
    rows["public: organisation"] = list(Organisation.objects.filter(pk=b.org.pk).values())
    # By address, not by organisation: a removed member has none.
    rows["public: users"] = list(
        User.objects.filter(email__endswith="@" + b.org.email_domain).order_by("pk").values()
    )
    return rows


def _changed(before: dict[str, list], after: dict[str, list]) -> list[str]:
    return sorted(table for table in before if before[table] != after.get(table))


def _send(client, method: str, url: str, body: dict, fmt: str, is_api: bool):
    if method == "GET":
        return client.get(url)
    if fmt == "multipart" or not is_api:
        for value in body.values():
            if hasattr(value, "seek"):
                value.seek(0)  # a file is read by every request that sends it
        if method != "POST":
            return client.generic(method, url, "")
        return client.post(url, body, format="multipart") if is_api else client.post(url, body)
    return client.generic(method, url, json.dumps(body), content_type="application/json")


def _is_404(response, is_api: bool) -> bool:
    """The envelope's NOT_FOUND for the API, the 404 page for pages."""
    if response.status_code != 404:
        return False
    if is_api:
        return response.json()["error"]["code"] == "NOT_FOUND"
    return "404.html" in [t.name for t in response.templates]


def _leaked(response, b: Seeded) -> list[str]:
    # A download (the audit's results) is streamed: read once, here.
    body = _body(response)
    text = body.decode()
    return sorted(token for token in b.tokens if token in text)


# --- The sweep ---------------------------------------------------------------------------------


def _view_name(callback) -> str:
    view = getattr(callback, "view_class", callback)
    return f"{view.__module__}.{view.__qualname__}"


def test_every_route_has_a_case():
    routes = _swept_routes()
    keys = {r.key for r in routes}
    missing = [r for r in routes if r.key not in CASES]
    stale = sorted(set(CASES) - keys)
    problems = [
        f"route {r.key!r} ({_view_name(r.callback)}) has no case in CASES of "
        f"{__name__}: add one line, e.g. "
        + (
            f"{r.key!r}: ById({', '.join(f'{p}=<kind>' for p in r.params)}),"
            if r.params
            else f"{r.key!r}: Lists(<kinds it shows>) or NoIds(<why it shows nothing>),"
        )
        for r in missing
    ]
    problems += [f"case {key!r} matches no route any more: remove or rename it" for key in stale]
    for r in routes:
        case = CASES.get(r.key)
        if r.params and case is not None and not isinstance(case, (ById, PlatformName, SignedLink)):
            problems.append(f"route {r.key!r} takes {sorted(r.params)}: its case must be ById(...)")
        if isinstance(case, (ById, PlatformName, SignedLink)) and set(case.params) != set(r.params):
            problems.append(
                f"case {r.key!r} covers {sorted(case.params)}, the route takes {sorted(r.params)}"
            )
    assert not problems, "\n".join(problems)


def _route_id(value) -> str:
    return value.key if isinstance(value, Route) else ""


@pytest.mark.parametrize(("route", "case"), _cases_of(ById), ids=_route_id)
def test_another_organisations_object_is_not_found(route, case, sweep, callers):
    a, b = sweep
    client = callers[route.is_api]
    served = route.served_methods(case)
    theirs = {param: b.ids[kind] for param, kind in case.params.items()}
    ours = {param: a.ids[kind] for param, kind in case.params.items()}
    nowhere = {param: _unknown_like(value) for param, value in theirs.items()}
    before = _snapshot(b)
    for version in route.versions:
        url = route.url(version, theirs)
        assert resolve(url).func is route.callback, f"{url} does not reach {route.key}"
        if "GET" in served:
            # A's own object at the same address is shown (and shows nothing of B's): the
            # 404 below is about whose the object is, not about a broken address.
            own = client.get(route.url(version, ours))
            assert own.status_code == 200, (route.url(version, ours), own.status_code, own.content[:300])
            assert not _leaked(own, b), (route.url(version, ours), _leaked(own, b))
        for method in METHODS:
            for body in case.bodies:
                where = f"{method} {url} {body or ''}"
                response = _send(client, method, url, body, case.format, route.is_api)
                if method not in served:
                    assert response.status_code in (404, 405), (where, response.status_code)
                    continue
                assert _is_404(response, route.is_api), (where, response.status_code, response.content[:300])
                assert not _leaked(response, b), (where, _leaked(response, b))
                unknown = _send(client, method, route.url(version, nowhere), body, case.format, route.is_api)
                assert _is_404(unknown, route.is_api), (where, "an unknown id", unknown.status_code)
                # "Not yours" in the very words of "does not exist": no oracle.
                if route.is_api:
                    assert response.json()["error"] == unknown.json()["error"], where
                else:
                    assert response.context.get("reason") == unknown.context.get("reason"), where
    changed = _changed(before, _snapshot(b))
    assert not changed, f"{route.key} changed organisation B's {changed}"


@pytest.mark.parametrize(("route", "case"), _cases_of(Lists), ids=_route_id)
def test_lists_show_none_of_another_organisations_objects(route, case, sweep, callers):
    a, b = sweep
    client = callers[route.is_api]
    for version in route.versions:
        for query in case.queries:
            url = route.url(version, {}, query.format(**a.ids))
            response = client.get(url)
            assert response.status_code == 200, (url, response.status_code, _body(response)[:300])
            text = _body(response).decode()
            for kind in case.kinds:
                assert any(s in text for s in a.shown[kind]), f"{url} does not show A's {kind}"
            assert not _leaked(response, b), f"{url} shows organisation B's {_leaked(response, b)}"
            if case.check:
                case.check(response, a)
            if query:
                hostile = route.url(version, {}, query.format(**b.ids))
                response = client.get(hostile)
                assert response.status_code == 200 or _is_404(response, route.is_api), (
                    hostile,
                    response.status_code,
                )
                assert not _leaked(response, b), f"{hostile} shows organisation B's {_leaked(response, b)}"


def _body(response) -> bytes:
    if response.streaming:  # read once: kept for the checks that read it again
        response.content_read = getattr(response, "content_read", None) or b"".join(
            response.streaming_content
        )
        return response.content_read
    return response.content


@pytest.mark.parametrize(("route", "case"), _cases_of(Refers), ids=_route_id)
def test_a_body_naming_another_organisations_object_is_not_found(route, case, sweep, callers):
    a, b = sweep
    client = callers[route.is_api]
    before = _snapshot(b)
    for version in route.versions:
        url = route.url(version, {})
        theirs = {name: b.ids[kind] for name, kind in case.fields.items()}
        nowhere = {name: _unknown_like(value) for name, value in theirs.items()}
        response = _send(client, "POST", url, theirs, "json", route.is_api)
        unknown = _send(client, "POST", url, nowhere, "json", route.is_api)
        assert _is_404(response, route.is_api), (url, response.status_code, response.content[:300])
        assert not _leaked(response, b), (url, _leaked(response, b))
        if route.is_api:
            assert response.json()["error"] == unknown.json()["error"], url
    changed = _changed(before, _snapshot(b))
    assert not changed, f"{route.key} changed organisation B's {changed}"
    with tenant_context(a.org):
        assert Job.objects.count() == len(a.jobs)  # nothing created, nothing charged


def test_the_django_admin_is_for_staff_only(world, sweep):
    """An organisation's admin is not an operator: every admin URL, B's objects included,
    sends them to sign in, and nothing of B's changes."""
    _, b = sweep
    assert not world.admin_a.is_staff
    client = Client()
    known = {"org_id": world.org_b.pk, "app_label": "tenants", "url": "tenants/organisation/"}
    before = _snapshot(b)
    admin_routes = [r for r in all_routes() if r.namespace == "admin" and r.callback.__name__ != "login"]
    assert len(admin_routes) > 20
    for route in admin_routes:
        object_id = world.member_b.pk if "/user/" in route.key else world.org_b.pk
        values = {p: known.get(p, "1") for p in route.params} | {"object_id": object_id}
        url = route.url("", values)
        for method in ("get", "post"):
            # Signed in afresh each time: a logout route must not make the rest pass by default.
            client.force_login(world.admin_a)
            response = getattr(client, method)(url)
            assert response.status_code == 302, (method, url, response.status_code)
            assert "login" in response["Location"] or response["Location"] == "/admin/", (
                url,
                response["Location"],
            )
    changed = _changed(before, _snapshot(b))
    assert not changed, f"the admin changed organisation B's {changed}"

    # The same addresses are real: an operator reaches B's organisation there.
    operator = User.objects.create_superuser("operator@sweep.test", "operator-password-123")
    client.force_login(operator)
    assert client.get(f"/admin/tenants/organisation/{world.org_b.pk}/change/").status_code == 200


@pytest.mark.parametrize(("route", "case"), _cases_of(SignedLink), ids=_route_id)
def test_a_signed_link_cannot_be_forged_from_an_id(route, case, sweep, callers):
    from django.core import signing

    from tenants.services.invitations import SALT

    _a, b = sweep
    ((param, kind),) = case.params.items()
    object_id = str(b.ids[kind])
    forged = (
        object_id,
        signing.dumps({"i": object_id, "n": "0" * 32}, salt=SALT, compress=True),  # signed, wrong nonce
        signing.dumps({"i": object_id}, key="not-the-secret-key", salt=SALT),  # signed with another key
    )
    # The Google step is a form's POST (CSRF-protected: no other site can plant a token).
    method = "post" if route.key.endswith("/google") else "get"
    for client in (callers[False], Client()):
        for token in forged:
            response = getattr(client, method)(route.url("v1", {param: token}), follow=True)
            assert response.status_code == 404, (token, response.status_code)
            assert b.org.name not in response.content.decode()
