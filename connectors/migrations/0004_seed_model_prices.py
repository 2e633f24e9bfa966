"""Mistral's prices (USD per 1M tokens, input / output) as of the project's start; edit them in the admin."""

from decimal import Decimal

from django.db import migrations

PRICES = {
    "mistral-small-latest": ("0.15", "0.60"),
    "mistral-medium-latest": ("1.50", "7.50"),
    "mistral-large-latest": ("0.50", "1.50"),
    "ministral-14b-latest": ("0.20", "0.20"),
    "ministral-8b-latest": ("0.15", "0.15"),
    "ministral-3b-latest": ("0.10", "0.10"),
    "codestral-latest": ("0.30", "0.90"),
    "open-mistral-nemo": ("0.15", "0.15"),
}


def seed(apps, schema_editor):
    ModelPrice = apps.get_model("connectors", "ModelPrice")
    for model, (inp, out) in PRICES.items():
        ModelPrice.objects.get_or_create(
            model=model, defaults={"input_per_million": Decimal(inp), "output_per_million": Decimal(out)}
        )


class Migration(migrations.Migration):
    dependencies = [("connectors", "0003_dashboard")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
