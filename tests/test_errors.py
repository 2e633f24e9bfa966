"""How requests fail: a 4xx naming the problem, a 503 with Retry-After when the database or broker is away."""

from __future__ import annotations

import pytest
from django.db import OperationalError
from django.test import Client
from kombu.exceptions import OperationalError as BrokerError

from conversations.api import views as api_views
from conversations.views import logs

pytestmark = pytest.mark.django_db


@pytest.fixture
def client_without_reraise():
    return Client(raise_request_exception=False)


def test_a_nul_in_a_query_string_is_a_400_naming_the_parameter(staff_client):
    response = staff_client.get("/calls/?contact=%2B1%00")
    assert response.status_code == 400
    assert "The query parameter &#x27;contact&#x27; contains a NUL character" in response.content.decode()


def test_an_unknown_api_address_is_a_json_404(client):
    response = client.get("/api/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["field"] == "path"


@pytest.mark.parametrize(
    ("method", "path"),
    [("post", "/api/v1"), ("get", "/api/v1"), ("post", "/api"), ("post", "/API/v1/chat/completions")],
)
def test_any_address_near_the_api_is_a_json_404_never_a_redirect(client_without_reraise, method, path):
    response = getattr(client_without_reraise, method)(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json" and "/api/docs/" in response.json()["error"]["message"]


@pytest.mark.parametrize("debug", [False, True])  # make run has DEBUG on: the re-check found it unnamed there
def test_an_unknown_host_is_refused_naming_the_header_and_the_setting(client, settings, caplog, debug):
    settings.DEBUG = debug
    response = client.get("/api/v1/models", headers={"host": "evil.example"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["field"] == "Host" and "ALLOWED_HOSTS" in error["message"]
    # One line per refusal, without a traceback: anyone can send any Host.
    refusals = [r for r in caplog.records if r.name == "django.security.DisallowedHost"]
    assert [(r.levelname, r.exc_info) for r in refusals] == [("WARNING", None)]


def test_an_unknown_host_on_a_page_is_one_warning_line_not_a_traceback(client_without_reraise, caplog):
    response = client_without_reraise.get("/accounts/login/", headers={"host": "evil.example"})
    assert response.status_code == 400 and b"ALLOWED_HOSTS" in response.content
    refusals = [r for r in caplog.records if r.name == "django.security.DisallowedHost"]
    assert [(r.levelname, r.exc_info) for r in refusals] == [("WARNING", None)]


def test_a_head_request_reads_like_a_get(client, integration_token):
    _, token = integration_token
    response = client.head("/api/v1/models", headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 200 and response.content == b""


def test_a_compressed_body_is_refused_naming_the_encoding(client, integration_token):
    _, token = integration_token
    headers = {"authorization": f"Bearer {token}", "content-encoding": "gzip"}
    response = client.post("/api/v1/messages", b"\x1f\x8b\x08\x00", content_type="application/json", headers=headers)
    assert response.status_code == 415
    assert (
        response.json()["error"]["field"] == "Content-Encoding"
        and "uncompressed" in response.json()["error"]["message"]
    )


@pytest.mark.parametrize(
    ("error", "service"),
    [(OperationalError("connection refused"), "database"), (BrokerError("Error 111 connecting"), "message broker")],
)
def test_an_outage_under_the_api_is_a_json_503_with_retry_after(
    client_without_reraise, integration_token, monkeypatch, error, service
):
    def unavailable(*args, **kwargs):
        raise error

    monkeypatch.setattr(api_views, "integration_for", unavailable)
    response = client_without_reraise.post(
        "/api/v1/messages", data={}, content_type="application/json", HTTP_AUTHORIZATION="Bearer sb_x"
    )

    assert (response.status_code, response["Retry-After"]) == (503, "5")
    assert response.json()["error"] == {
        "field": "service",
        "message": f"Switchboard is briefly unavailable: the {service} did not answer. Try again in a few seconds.",
        # OpenAI's fields too: the drop-in endpoint's SDKs read them from any answer under /api/
        "type": "api_error",
        "param": None,
        "code": "service_unavailable",
    }


def test_an_outage_on_a_dashboard_page_says_to_retry(client_without_reraise, support_user, monkeypatch):
    client_without_reraise.force_login(support_user)

    def unavailable(*args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(logs, "page", unavailable)
    response = client_without_reraise.get("/calls/")

    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert "Switchboard is briefly unavailable: the database did not answer." in response.content.decode()


def test_a_bug_under_the_api_is_still_a_json_answer(client_without_reraise, integration_token, monkeypatch):
    def broken(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(api_views, "message_receive", broken)
    response = client_without_reraise.post(
        "/api/v1/messages",
        data={},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {integration_token[1]}",
    )
    assert response.status_code == 500
    assert response.json()["error"]["field"] == "server"


@pytest.mark.django_db(transaction=True)
def test_a_body_cut_short_of_its_content_length_is_refused_not_taken(live_server, integration_token):
    """A client that stops sending: the server reads what came, which must not be taken as the message."""
    import socket
    from urllib.parse import urlsplit

    from conversations.models import Message

    _, token = integration_token
    body = b'{"template": "Support", "contact": "+4915112345678", "message": "Hi"}'
    address = urlsplit(live_server.url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as raw:
        raw.sendall(
            b"POST /api/v1/messages HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {token}\r\nContent-Length: {len(body) + 50}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        raw.shutdown(socket.SHUT_WR)  # and sends no more
        answer = b"".join(iter(lambda: raw.recv(65536), b""))
    assert answer.startswith(b"HTTP/1.1 400") and b"The body ended after" in answer
    assert not Message.objects.exists()
