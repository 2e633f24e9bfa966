from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from connectors import crypto
from connectors.models import ProviderConnection


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored API key with the first key in FIELD_ENCRYPTION_KEY. To rotate: set "
        "FIELD_ENCRYPTION_KEY=NEW,OLD, run this, then drop OLD."
    )

    def handle(self, *args, **options):
        rotated = 0
        with transaction.atomic():
            for connection in ProviderConnection.objects.select_for_update().exclude(api_key_encrypted=""):
                try:
                    connection.api_key_encrypted = crypto.rotate(connection.api_key_encrypted)
                except crypto.SecretUnreadable as error:
                    raise CommandError(f"Connection {connection.name!r}: {error} Nothing was changed.") from None
                connection.save(update_fields=["api_key_encrypted"])
                rotated += 1
        self.stdout.write(f"Re-encrypted {rotated} API key(s) with the first FIELD_ENCRYPTION_KEY.")
