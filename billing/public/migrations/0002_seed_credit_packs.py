"""The packs on sale at launch; operators change them in the admin afterwards."""

from django.db import migrations

PACKS = [
    ("Starter", 100, 1_000, 10),
    ("Team", 500, 4_500, 20),
    ("Scale", 2_000, 16_000, 30),
]


def seed(apps, schema_editor):
    CreditPack = apps.get_model("billing_public", "CreditPack")
    if CreditPack.objects.exists():
        return
    for name, credits, price_cents, order in PACKS:
        CreditPack.objects.create(
            name=name, credits=credits, price_cents=price_cents, currency="usd", sort_order=order
        )


class Migration(migrations.Migration):
    dependencies = [("billing_public", "0001_initial")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
