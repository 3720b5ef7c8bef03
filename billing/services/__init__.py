"""Every write of billing, one module per concern:

- `ledger`: credits (grant, purchase, adjust, deduct for a job, refund a job; reserve for
  an audit, charge from that reservation, release the rest), the only writer of the ledger
  and the balance;
- `purchases`: credit packs bought with Stripe Checkout, fulfilled, expired, refunded and
  reconciled exactly once;
- `stripe_events`: Stripe's signed events, recorded and applied exactly once.

The ledger's functions are the billing API other apps use (`from billing.services import
credits_deduct`); purchases and Stripe events are billing's own business.
"""

from billing.services.ledger import (
    MAX_SINGLE_AMOUNT,
    InsufficientCredits,
    credits_adjust,
    credits_charge_reserved,
    credits_deduct,
    credits_grant,
    credits_purchase,
    credits_refund,
    credits_release,
    credits_reserve,
)

__all__ = [
    "MAX_SINGLE_AMOUNT",
    "InsufficientCredits",
    "credits_adjust",
    "credits_charge_reserved",
    "credits_deduct",
    "credits_grant",
    "credits_purchase",
    "credits_refund",
    "credits_release",
    "credits_reserve",
]
