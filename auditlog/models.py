"""The audit log: who changed what in an organisation, and when. One table in the public
schema, so operators can read every organisation's in the admin; each row names its
organisation by id (this app imports no other), and every read takes that id.

Rows are never changed: a trigger refuses every UPDATE, and every DELETE except the
retention purge's (migration 0002)."""

from __future__ import annotations

from django.db import models


class ActorKind(models.TextChoices):
    USER = "user", "User"
    KEY = "key", "API key"
    OPERATOR = "operator", "Operator"
    SYSTEM = "system", "System"
    ANONYMOUS = "anonymous", "Anonymous"


class AuditEvent(models.Model):
    id = models.BigAutoField(primary_key=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Null for what belongs to no organisation (a failed sign-in of an unknown address).
    organisation_id = models.UUIDField(null=True, blank=True)
    actor_kind = models.CharField(max_length=10, choices=ActorKind.choices)
    actor_id = models.CharField(max_length=64, blank=True)
    actor_label = models.CharField(max_length=300)
    action = models.CharField(max_length=64)
    target_type = models.CharField(max_length=40, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_label = models.CharField(max_length=300, blank=True)
    # {"before": {...}, "after": {...}} for settings; facts of the action otherwise. Never a secret.
    changes = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=255, blank=True)
    request_id = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["organisation_id", "-created_at"], name="auditevent_org_time_idx"),
            models.Index(fields=["organisation_id", "action"], name="auditevent_org_action_idx"),
            models.Index(fields=["created_at"], name="auditevent_time_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.action} by {self.actor_label} at {self.created_at:%Y-%m-%d %H:%M:%S}"
