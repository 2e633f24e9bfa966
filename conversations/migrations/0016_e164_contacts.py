"""WhatsApp contacts were stored as Meta sends them (digits); they are E.164 now, as numbers from the API."""

from django.db import migrations
from django.db.models import F, Value
from django.db.models.functions import Concat


def to_e164(apps, schema_editor):
    Conversation = apps.get_model("conversations", "Conversation")
    Conversation.objects.filter(channel__isnull=False, contact__regex=r"^[0-9]+$").update(
        contact=Concat(Value("+"), F("contact"))
    )


def to_wa_id(apps, schema_editor):
    Conversation = apps.get_model("conversations", "Conversation")
    for conversation in Conversation.objects.filter(channel__isnull=False, contact__regex=r"^\+[0-9]+$"):
        conversation.contact = conversation.contact[1:]
        conversation.save(update_fields=["contact"])


class Migration(migrations.Migration):
    dependencies = [("conversations", "0015_durable_outbound")]
    operations = [migrations.RunPython(to_e164, to_wa_id)]
