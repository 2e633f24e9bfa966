from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from connectors import crypto
from connectors.models import ProviderConnection
from conversations.models import Integration, WhatsAppChannel

# Every column that holds a secret encrypted with FIELD_ENCRYPTION_KEY, by model.
ENCRYPTED = [
    (ProviderConnection, ["api_key_encrypted"]),
    (Integration, ["callback_secret_encrypted"]),
    (WhatsAppChannel, ["app_secret_encrypted", "access_token_encrypted"]),
]


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret (API keys, callback signing secrets, WhatsApp app secrets and access "
        "tokens) with the first key in FIELD_ENCRYPTION_KEY. To rotate: set FIELD_ENCRYPTION_KEY=NEW,OLD, run "
        "this, then drop OLD."
    )

    def handle(self, *args, **options):
        rotated = 0
        with transaction.atomic():
            for model, fields in ENCRYPTED:
                for row in model.objects.select_for_update().order_by("pk"):
                    changed = []
                    for field in fields:
                        if not getattr(row, field):
                            continue
                        try:
                            setattr(row, field, crypto.rotate(getattr(row, field)))
                        except crypto.SecretUnreadable as error:
                            what = model._meta.verbose_name.capitalize()
                            raise CommandError(f"{what} {row.name!r}: {error} Nothing was changed.") from None
                        changed.append(field)
                    if changed:
                        row.save(update_fields=changed)
                        rotated += len(changed)
        self.stdout.write(f"Re-encrypted {rotated} secret(s) with the first FIELD_ENCRYPTION_KEY.")
