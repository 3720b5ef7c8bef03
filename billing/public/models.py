"""Public-schema billing records."""

from __future__ import annotations

import uuid

from django.db import models


class CreditPack(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100)
    credits = models.PositiveIntegerField()
    price_cents = models.PositiveIntegerField()
    currency = models.CharField(max_length=3, default="usd")
    active = models.BooleanField(default=True)
    sort_order = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["sort_order", "credits"]
        constraints = [
            models.CheckConstraint(condition=models.Q(credits__gt=0), name="pack_credits_positive"),
            models.CheckConstraint(condition=models.Q(price_cents__gt=0), name="pack_price_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.name}: {self.credits} credits for {self.price} {self.currency.upper()}"

    @property
    def price(self) -> str:
        return f"{self.price_cents / 100:.2f}"


class StripeEvent(models.Model):
    """Every verified Stripe event id, written in the transaction that applied it: a
    duplicate or replayed event finds its id here and changes nothing."""

    event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=100)
    organisation_id = models.UUIDField(null=True, blank=True)
    outcome = models.CharField(max_length=255, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.event_id} {self.type}"


class CheckoutIndex(models.Model):
    """Which organisation and purchase a Checkout Session (and, once paid, its payment)
    belongs to, so the public webhook can find the schema to write in."""

    session_id = models.CharField(max_length=255, unique=True)
    payment_intent_id = models.CharField(max_length=255, blank=True, db_index=True)
    organisation_id = models.UUIDField()
    purchase_id = models.UUIDField(unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.session_id
