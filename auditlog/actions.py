"""Every action the audit log records (docs/specs/team-access.md). audit_record refuses a
name not listed here, so a typo fails the test that makes the change, not the reader
filtering for it later."""

ACTIONS = (
    "member.joined",
    "member.role_changed",
    "member.removed",
    "member.left",
    # An operator changed a user in the admin (organisation, role, active, staff).
    "member.updated_by_operator",
    "organisation.updated",
    "invitation.created",
    "invitation.resent",
    "invitation.revoked",
    "invitation.accepted",
    "api_key.created",
    "api_key.revoked",
    "webhook.created",
    "webhook.updated",
    "webhook.secret_rotated",
    "webhook.deleted",
    "etl_source.created",
    "etl_source.updated",
    "etl_source.deleted",
    "billing.checkout_started",
    "billing.refunded",
    "credits.granted",
    "audit.started",
    "audit.cancelled",
    "auth.signed_in",
    "auth.sign_in_failed",
    "auth.signed_out_everywhere",
    "auth.token_family_revoked",
)
FAMILIES = tuple(sorted({action.split(".")[0] for action in ACTIONS}))
# What a reader may filter by: an action, or a family of them (`member.*`).
FILTERS = frozenset(ACTIONS) | {f"{family}.*" for family in FAMILIES}
