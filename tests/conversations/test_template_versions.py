"""Template versions: every save is kept, one is published, publishing is checked against the channels, and a
publish or a rollback reaches an ongoing conversation at the customer's next message."""

from __future__ import annotations

import html
import json
import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from conversations import services, whatsapp
from conversations.models import Call, Conversation, PromptTemplate, WhatsAppChannel
from conversations.whatsapp.views import simulated_payload
from tests.factories import ConnectionFactory
from tests.helpers import execute_now

pytestmark = pytest.mark.django_db
V1 = "You answer for {{business_name}}."
V2 = "You answer for {{business_name}}, briefly and kindly."


def add(name="Support", system=V1, **options) -> str:
    out = StringIO()
    call_command("add_template", name, system=system, stdout=out, **options)
    return out.getvalue()


def sent_system_prompt(call: Call) -> str:
    call = execute_now(call.pk) or Call.objects.get(pk=call.pk)
    return call.request["messages"][0]["content"]


@pytest.fixture
def sandbox_connection(sandbox):
    return ConnectionFactory(name="Sandbox", base_url=sandbox.base_url, max_attempts=1)


@pytest.fixture
def shop(sandbox_connection, published):
    add()
    call_command(
        "add_whatsapp_channel", "Shop", phone_number_id="106540352242922", app_secret="s", access_token="t",
        template="Support", connection="Sandbox", var=["business_name=Acme"], burst_seconds=0,
        graph_base_url="http://127.0.0.1:9", stdout=StringIO(),
    )  # fmt: skip
    return WhatsAppChannel.objects.get()


def say(channel, text, n=[0]):  # noqa: B006 - a counter for unique message ids
    n[0] += 1
    payload = simulated_payload(channel, "15550100100", text)
    payload["entry"][0]["changes"][0]["value"]["messages"][0]["id"] = f"wamid.VERSIONS{n[0]}"
    body = json.dumps(payload).encode()
    whatsapp.webhook_accept(channel=channel, raw_body=body, signature=whatsapp.sign(channel, body))
    return Call.objects.order_by("-id").first()


def test_a_second_add_template_is_a_draft_until_published_and_an_older_one_rolls_back(sandbox_connection, published):
    assert "Created template 'Support' (version 1, published)" in add()
    assert "Added version 2 of 'Support' as a draft; customers still get version 1" in add(system=V2)
    assert "unchanged: version 2 has this text" in add(system=V2)  # no version for the same text

    def console_prompt() -> str:
        template = PromptTemplate.objects.get()
        call = services.call_send(
            connection=sandbox_connection, template=template, customer_message="Hi", variables={"business_name": "A"}
        )
        return sent_system_prompt(call), Call.objects.get(pk=call.pk).template_version.number

    assert console_prompt() == ("You answer for A.", 1)
    call_command("publish_template", "Support", "2", stdout=StringIO())
    assert console_prompt() == ("You answer for A, briefly and kindly.", 2)
    call_command("publish_template", "Support", "1", stdout=StringIO())  # the rollback
    assert console_prompt() == ("You answer for A.", 1)
    assert list(PromptTemplate.objects.get().versions.values_list("number", flat=True)) == [2, 1]


def test_a_publish_reaches_an_ongoing_whatsapp_conversation_at_the_next_message(shop):
    first = say(shop, "Hi")
    assert sent_system_prompt(first) == "You answer for Acme."

    add(system=V2, publish=True)
    second = say(shop, "Are you open?")

    assert second.conversation_id == first.conversation_id
    assert sent_system_prompt(second) == "You answer for Acme, briefly and kindly."
    assert Call.objects.get(pk=second.pk).template_version.number == 2


def test_a_version_needing_a_value_a_channel_does_not_supply_is_not_published(shop, client, team_admin):
    needs_hours = "You answer for {{business_name}}, open {{opening_hours}}."
    with pytest.raises(CommandError, match=r"WhatsApp channel Shop supplies no value for \{\{opening_hours\}\}"):
        add(system=needs_hours, publish=True)
    template = PromptTemplate.objects.get()
    assert template.published.number == 1 and template.versions.count() == 2  # kept as a draft

    client.force_login(team_admin)
    page = client.post(reverse("conversations:template_publish", args=[template.pk, 2]), follow=True)
    assert "Version 2 was not published. WhatsApp channel Shop supplies no value" in html.unescape(
        page.content.decode()
    )
    say(shop, "Hi")
    assert sent_system_prompt(Call.objects.get()) == "You answer for Acme."  # customers still get version 1

    def publish_from_the_form(system: str) -> str:
        form = {"name": "Support", "system_prompt": system, "user_message": "{{customer_message}}", "publish": "1"}
        page = client.post(reverse("conversations:template_edit", args=[template.pk]), form, follow=True)
        return html.unescape(page.content.decode())

    # The same text as the draft: nothing is saved, and the page says so rather than "saved as a draft".
    page = publish_from_the_form(needs_hours)
    assert "Nothing new to save: version 2 has this text. It was not published. WhatsApp channel Shop" in page
    assert template.versions.count() == 2
    page = publish_from_the_form(needs_hours + " Be kind.")
    assert "Saved version 3 as a draft, not published. WhatsApp channel Shop" in page
    assert 'Add it to the channel\'s Variables (Admin → WhatsApp channels → Shop, e.g. {"opening_hours": "…"}' in page
    channel_page = html.unescape(client.get(reverse("conversations:whatsapp_channel", args=[shop.pk])).content.decode())
    assert "<code>{{business_name}}</code> = Acme" in channel_page  # what the channel supplies
    # Version 2 was never published: publishing it is not a rollback. None is older than version 1 yet.
    assert "(roll back)" not in page and "(an older draft)" not in page


def test_the_form_saves_drafts_and_publishes_and_support_staff_only_read(client, team_admin, support_user):
    add()
    template = PromptTemplate.objects.get()
    url = reverse("conversations:template_edit", args=[template.pk])
    form = {"name": "Support", "system_prompt": V2, "user_message": "{{customer_message}}"}

    client.force_login(support_user)
    assert "Version" in client.get(url).content.decode()  # staff see the versions
    assert client.post(url, {**form, "publish": "1"}).status_code == 403
    assert client.post(reverse("conversations:template_publish", args=[template.pk, 1])).status_code == 403

    client.force_login(team_admin)
    draft = client.post(url, {**form, "draft": "1"}, follow=True).content.decode()
    assert "Saved version 2 of Support as a draft. Customers get version 1." in draft
    template.refresh_from_db()
    assert template.system_prompt == V1
    published = client.post(url, {**form, "system_prompt": V2 + "\nNever promise dates.", "publish": "1"}, follow=True)
    assert "Saved and published version 3 of Support" in published.content.decode()
    template.refresh_from_db()
    assert template.published.number == 3 and template.published.created_by == team_admin
    assert "System prompt +1 −0 lines" in html.unescape(published.content.decode())  # what changed, in words


def compare_two_versions(client, user, versions: dict) -> str:
    """Two versions of Support (the second adds a line), compared as `user` with `versions` (?a=&b=)."""
    add()
    add(system="You answer for {{business_name}}.\nBe brief.")
    client.force_login(user)
    url = reverse("conversations:template_compare", args=[PromptTemplate.objects.get().pk])
    return html.unescape(client.get(url, versions).content.decode())


def test_a_diff_between_any_two_versions(client, support_user):
    page = compare_two_versions(client, support_user, {"a": 1, "b": 2})

    assert '<span class="added">+ Be brief.</span>' in page
    assert '<span class="same">  You answer for {{business_name}}.</span>' in page
    assert "version 1 → 2" in page


def test_a_version_that_does_not_exist_is_named_not_silently_swapped_for_another(client, support_user):
    page = compare_two_versions(client, support_user, {"a": 1, "b": 99})

    assert "Support has no version '99'; showing version 2." in page and "version 1 → 2" in page


def test_the_live_preview_renders_with_a_channels_values_and_names_problems(shop, client, support_user):
    client.force_login(support_user)
    template = PromptTemplate.objects.get()
    preview = client.post(
        reverse("conversations:template_preview"),
        {"template": template.pk, "system_prompt": "Hi from {{business_name}} at {{city}}.", "user_message": "Q"},
    ).content.decode()
    preview = html.unescape(preview)

    assert "Hi from Acme at ‹city›." in preview and "WhatsApp Shop's values" in preview
    assert "WhatsApp Shop supplies no value for {{city}}: publishing this will be refused" in preview
    assert "The user message has no {{customer_message}}" in preview


def test_a_test_runs_pinned_version_is_what_its_conversation_sends(sandbox_connection, published):
    add()
    add(system=V2)  # a draft
    template = PromptTemplate.objects.get()
    draft = template.versions.get(number=2)

    call = services.call_send(
        connection=sandbox_connection, template=template, customer_message="Hi", variables={"business_name": "A"},
        version=draft,
    )  # fmt: skip

    assert sent_system_prompt(call) == "You answer for A, briefly and kindly."
    assert Conversation.objects.get().template_version == draft


def test_a_placeholder_added_with_its_channel_value_reaches_a_customer_who_wrote_before(shop):
    first = say(shop, "Hi")
    execute_now(first.pk)
    shop.variables = {"business_name": "Acme", "opening_hours": "9-17"}
    shop.save()
    add(system="You answer for {{business_name}}, open {{opening_hours}}.", publish=True)

    second = say(shop, "Are you open?")

    assert second is not None and second.conversation_id == first.conversation_id
    assert sent_system_prompt(second) == "You answer for Acme, open 9-17."


def test_an_api_contact_who_wrote_before_a_placeholder_was_removed_is_still_answered(
    client, sandbox_connection, published
):
    from conversations.api.tokens import integration_create

    add(system="You answer for {{business_name}}, open {{opening_hours}}.")
    _, token = integration_create(
        name="Bot", templates=[PromptTemplate.objects.get()], connections=[sandbox_connection]
    )
    body = {"template": "Support", "contact": "+15550100100", "message": "Hi",
            "variables": {"business_name": "Acme", "opening_hours": "9-17"}}  # fmt: skip

    def post(**changes):
        return client.post("/api/v1/messages", data=json.dumps({**body, **changes}), content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {token}")  # fmt: skip

    assert post().status_code == 202
    add(system=V1, publish=True)  # {{opening_hours}} is gone
    assert post(message="Still there?", variables={"business_name": "Acme"}).status_code == 202
    answered = post(message="And now?", variables=None)
    assert answered.status_code == 202, answered.content
    assert Conversation.objects.count() == 1


def test_an_admin_edits_from_any_version(client, team_admin):
    add()
    add(system=V2)
    template = PromptTemplate.objects.get()
    client.force_login(team_admin)
    page = html.unescape(
        client.get(reverse("conversations:template_edit", args=[template.pk]), {"from": 1}).content.decode()
    )
    assert f"{V1}</textarea>" in page and "Edit from this version" in page


def test_publishing_an_older_version_says_whether_customers_had_it(sandbox_connection, published, client, team_admin):
    add()
    add(system=V2)  # a draft, never published
    add(system="You answer for {{business_name}}. Version three.", publish=True)
    client.force_login(team_admin)

    page = html.unescape(client.get(reverse("conversations:template_edit", args=[PromptTemplate.objects.get().pk]))
                         .content.decode())  # fmt: skip

    buttons = [line.strip() for line in page.splitlines() if "Publish (" in line]
    assert [b.split("Publish (")[1].split(")")[0] for b in buttons] == ["an older draft", "roll back"]  # 2, then 1


def test_a_template_too_big_to_fill_in_or_to_send_is_refused_when_saved(client, team_admin):
    many = " ".join(f"{{{{v{n}}}}}" for n in range(101))
    with pytest.raises(CommandError, match=r"has 101 different \{\{variables\}\}; it may have at most 100"):
        add(system=many)
    with pytest.raises(CommandError, match="200,001 characters; a template takes at most 200,000"):
        add(system="x" * 200_001)
    assert not PromptTemplate.objects.exists()
    add(system=" ".join(f"{{{{v{n}}}}}" for n in range(100)))  # the most it may have
    client.force_login(team_admin)

    listed = client.get(reverse("conversations:templates")).content.decode()

    assert listed.count("{{v99}}") == 1 and "{{v0}} {{v1}}" in listed  # its name, and the prompt's start only


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("Be kind.\x01", "a control character (U+0001)"),
        ("Say \u202eyes", "a text-direction control (U+202E)"),
        ("Say \u2067yes", "a text-direction control (U+2067)"),
        ("Be kind.\U000e0049\U000e0067", "an invisible tag character (U+E0049)"),  # "Ig", for the model only
        ("Be\u200bkind.", "an invisible formatting character (U+200B)"),
    ],
)
def test_a_prompt_holding_what_changes_it_unseen_is_refused(text, words):
    with pytest.raises(CommandError, match=re.escape(f"It holds {words}")):
        add(system=f"{V1} {text}")
    add(system=f"{V1} أجب بلطف\u200f.\tThanks \U0001f3f4\U000e0077\U000e006c\U000e0073\U000e007f")  # a mark, a
    # tab and Wales's flag (tag characters that everyone sees) are text's own
    assert PromptTemplate.objects.count() == 1
