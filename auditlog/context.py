"""Who is acting, for the audit log: set once per request by AuditActorMiddleware (or by a
caller that acts for someone, such as a sign-in that has no request user yet), read by
auditlog.services when a change is recorded. Outside any request (Celery tasks, commands)
the actor is `system`."""

from __future__ import annotations

import contextlib
import contextvars
import uuid
from dataclasses import dataclass, replace

from auditlog.models import ActorKind


@dataclass(frozen=True)
class Actor:
    kind: str
    label: str
    id: str = ""
    ip: str | None = None
    user_agent: str = ""
    request_id: str = ""

    def but(self, **changes) -> Actor:
        return replace(self, **changes)

    @property
    def uuid(self) -> uuid.UUID | None:
        """The actor's id as a UUID (a user's or key's), for columns that hold one."""
        try:
            return uuid.UUID(self.id)
        except ValueError:
            return None


SYSTEM = Actor(kind=ActorKind.SYSTEM, label="system")
_current: contextvars.ContextVar[Actor | None] = contextvars.ContextVar("audit_actor", default=None)


def current_actor() -> Actor:
    return _current.get() or SYSTEM


@contextlib.contextmanager
def acting_as(actor: Actor):
    token = _current.set(actor)
    try:
        yield actor
    finally:
        _current.reset(token)


def _acting_person() -> Actor | None:
    """The request's actor when it is someone (a person, key or operator), else None."""
    current = _current.get()
    if current is not None and current.kind in (ActorKind.USER, ActorKind.KEY, ActorKind.OPERATOR):
        return current
    return None


def actor_on_behalf_of(user) -> Actor:
    """Who acts when `user` is the owner of what is done: the request's actor when it is a
    person, key or operator (a key acts for its creator, but the key is the actor), else
    `user` themselves, keeping the request's address and agent when there is a request (a
    sign-up or a refresh has no signed-in caller yet), as outside any request (commands)."""
    if (person := _acting_person()) is not None:
        return person
    base = _current.get() or SYSTEM
    return base.but(kind=ActorKind.USER, label=f"user:{user.email}", id=str(user.pk))


def actor_named(label: str, actor_id=None) -> Actor:
    """The request's actor when there is one (a person, key or operator); outside a request,
    the actor `label` names (`operator:<name>` from a command, `stripe`, `system`)."""
    if (person := _acting_person()) is not None:
        return person
    kind = ActorKind.OPERATOR if label.startswith("operator:") else ActorKind.SYSTEM
    return Actor(kind=kind, label=label, id=str(actor_id or ""))
