"""The shape of an organisation API key: `nx_live_<8 characters>.<32 characters>`. The
part before the dot is the prefix (stored, shown in lists, used to find the row); the
whole key is hashed with djangorestframework-api-key's SHA-512 hasher (a key has ~190 bits
of randomness, so a slow password hash would add nothing but latency)."""

from __future__ import annotations

import re

from django.utils.crypto import get_random_string
from rest_framework_api_key.crypto import KeyGenerator

KEY_PREFIX = "nx_live_"
# What a key looks like (get_random_string's alphabet is [A-Za-z0-9]).
KEY_SHAPE = re.compile(r"nx_live_[A-Za-z0-9]{8}\.[A-Za-z0-9]{32}")


def looks_like_api_key(credentials: str) -> bool:
    return credentials.startswith("nx_")


class OrganisationKeyGenerator(KeyGenerator):
    def __init__(self):
        super().__init__(prefix_length=8, secret_key_length=32)

    def get_prefix(self) -> str:
        return KEY_PREFIX + get_random_string(self.prefix_length)


# What a key may be given, and what each allows. Every API view names the scope each of its
# methods needs (nexus.api.permissions); a view that names none refuses keys.
SCOPES = {
    "jobs:read": "Read jobs, their events and usage analytics.",
    "jobs:write": "Submit summarise and analyse jobs (spends credits).",
    "audits:read": "Read audits, their items and results.",
    "audits:write": "Start, pause, resume and cancel audits (spends credits).",
    "data:read": "Read the unified records the ETL ingested.",
    "etl:read": "Read data sources, runs and ETL statistics.",
    "etl:write": "Create, change, delete and run data sources, and upload their files.",
    "webhooks:read": "Read webhook endpoints, event types and deliveries.",
    "webhooks:write": "Create, change, delete and test webhook endpoints; rotate secrets; redeliver.",
    "billing:read": "Read the credit balance, the ledger, packs and purchases.",
    "billing:write": "Start a Stripe checkout to buy credits.",
}
