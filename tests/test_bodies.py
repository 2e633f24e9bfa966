"""Request bodies as the web server hands them over (config/bodies.py): sent in chunks without Content-Length,
malformed, or empty, to the API and to the WhatsApp webhook."""

from __future__ import annotations

import json

import pytest


@pytest.mark.parametrize(
    ("chunks", "found"),
    [
        (b"zz\r\nabc\r\n0\r\n\r\n", "Invalid chunk size"),  # a size that is not hexadecimal
        (b"-5\r\nabc\r\n0\r\n\r\n", "Invalid chunk size"),
        (b"3\r\nabcX0\r\n\r\n", "Invalid chunk terminator"),  # data not followed by CRLF
        (b'40\r\n{"template"', "it ended before its last chunk"),  # the client stopped sending
    ],
)
def test_malformed_chunks_are_a_400_naming_the_framing_not_a_500(world, chunks, found):
    """The attack run: gunicorn's chunk decoder raised inside the view and the API answered 500. The body is
    decoded here by gunicorn's own reader, as the web server hands it over."""
    import types

    from django.test import RequestFactory
    from gunicorn.http.body import Body, ChunkedReader
    from gunicorn.http.unreader import IterUnreader

    from conversations.api import views as api_views
    from conversations.whatsapp import views as whatsapp_views

    def sent(path, **headers):
        request = RequestFactory().generic("POST", path, b"", content_type="application/json", **headers)
        request.META.pop("CONTENT_LENGTH", None)
        request.META["HTTP_TRANSFER_ENCODING"] = "chunked"
        request.META["wsgi.input"] = Body(ChunkedReader(types.SimpleNamespace(), IterUnreader([chunks])))
        return request

    answer = api_views.messages(sent("/api/v1/messages", HTTP_AUTHORIZATION=f"Bearer {world['token']}"))
    assert answer.status_code == 400
    error = json.loads(answer.content)["error"]
    assert error["field"] == "body"
    assert f"The chunked body could not be read ({found}" in error["message"]
    assert "or send the body with Content-Length instead" in error["message"]

    channel = world["channel"]
    delivery = whatsapp_views.webhook(sent(f"/whatsapp/{channel.pk}/webhook/"), pk=channel.pk)
    assert delivery.status_code == 400
    assert "The chunked body could not be read" in json.loads(delivery.content)["error"]


@pytest.mark.parametrize("chunked", [False, True])
def test_an_empty_body_is_named_as_empty_and_a_chunked_one_says_why(world, chunked):
    """The attack run: under make run (Django's development server, which does not decode chunks) a valid body
    sent chunked read as empty, and the answer, "The body must be a JSON object", sent the client hunting."""
    import io

    from django.test import RequestFactory

    from conversations.api import views as api_views

    request = RequestFactory().generic(
        "POST", "/api/v1/messages", b"", content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {world['token']}"
    )
    if chunked:
        request.META.pop("CONTENT_LENGTH", None)
        request.META["HTTP_TRANSFER_ENCODING"] = "chunked"
        request.META["wsgi.input"] = io.BytesIO(b"")  # what the development server hands over
    answer = api_views.messages(request)

    assert answer.status_code == 400
    message = json.loads(answer.content)["error"]["message"]
    assert message.startswith("The body is empty: send a JSON object, with Content-Length.")
    assert ("this server did not decode them" in message) is chunked


def test_a_chunked_body_is_read_by_the_api_and_the_webhook(world):
    """Sent with Transfer-Encoding: chunked and no Content-Length (the web server decodes the chunks), a body
    read as empty: the API said 'not a JSON object' and a signed webhook 'signature does not match'."""
    import io

    from django.test import RequestFactory

    from conversations import whatsapp
    from conversations.api import views as api_views
    from conversations.whatsapp import views as whatsapp_views
    from conversations.whatsapp.views import simulated_payload
    from tests.test_hostile_input import GOOD_MESSAGE

    def chunked(path, body, **headers):
        request = RequestFactory().generic("POST", path, body, content_type="application/json", **headers)
        del request.META["CONTENT_LENGTH"]
        request.META["HTTP_TRANSFER_ENCODING"] = "chunked"
        request.META["wsgi.input"] = io.BytesIO(body)
        return request

    body = json.dumps({**GOOD_MESSAGE, "message": "Sent in chunks"}).encode()
    answer = api_views.messages(chunked("/api/v1/messages", body, HTTP_AUTHORIZATION=f"Bearer {world['token']}"))
    assert answer.status_code in (200, 202), answer.content

    channel = world["channel"]
    delivery = json.dumps(simulated_payload(channel, "15550100100", "Chunked hello")).encode()
    signed = chunked(
        f"/whatsapp/{channel.pk}/webhook/", delivery, HTTP_X_HUB_SIGNATURE_256=whatsapp.sign(channel, delivery)
    )
    assert whatsapp_views.webhook(signed, pk=channel.pk).status_code == 200
