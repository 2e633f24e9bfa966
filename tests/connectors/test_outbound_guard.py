"""One guard for every outbound URL: every spelling of an internal address refused, on save and before each
request, and the request connects to the address that was checked (DNS rebinding cannot redirect it)."""

from __future__ import annotations

import datetime
import html
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import urllib3
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.core.management import CommandError, call_command
from django.urls import reverse

from connectors import http, safety
from connectors.errors import ErrorKind, ProviderError, explain
from connectors.models import ProviderConnection
from conversations.models import Integration

INTERNAL_SPELLINGS = [
    "https://2852039166/",  # 169.254.169.254 as one decimal number
    "https://0xa9fea9fe/",
    "https://0x7f000001/",
    "https://0177.0.0.1/",  # octal
    "https://127.1/",
    "https://0/",
    "https://0.0.0.0/",
    "https://localhost./",
    "https://api.localhost/",
    "https://metadata.google.internal/computeMetadata/v1/",
    "https://metadata/",
    "https://[::1]/",
    "https://[::ffff:127.0.0.1]/",
    "https://[::ffff:a9fe:a9fe]/",  # IPv4-mapped metadata
    "https://[64:ff9b::a9fe:a9fe]/",  # NAT64
    "https://[2002:a9fe:a9fe::1]/",  # 6to4
    "https://[fe80::1%25eth0]/",
    "https://[fd00:ec2::254]/",
    "https://[::ffff:0:7f00:1]/",  # IPv4-translated loopback
    "https://[::ffff:0:a9fe:a9fe]/",  # IPv4-translated metadata
    "https://[64:ff9b:1::a9fe:a9fe]/",  # local-use NAT64 (RFC 8215)
    "https://[fec0::1]/",  # deprecated site-local
    "https://[100::1]/",  # discard-only
    "https://10.0.0.1/",
    "https://100.100.100.200/",  # Alibaba's metadata, shared address space
    "https://192.168.1.1./",
]


@pytest.fixture(autouse=True)
def fresh_lookups(settings):
    settings.ALLOWED_PROVIDER_HOSTS = ["127.0.0.1", "localhost"]  # as in tests; the spellings above are not listed
    safety.forget_verdicts()
    yield
    safety.forget_verdicts()


@pytest.mark.parametrize("url", INTERNAL_SPELLINGS)
def test_every_spelling_of_an_internal_address_is_refused_before_any_lookup(url, monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", _no_lookups)
    problem = safety.url_problem(url)
    assert problem and "internal address" in problem, (url, problem)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("https://api.mistral.ai@169.254.169.254/", "user name or password"),
        ("https://user:pass@api.mistral.ai/v1", "user name or password"),
        ("https://169.254.169.254\\@api.mistral.ai/", "backslash"),
        ("https://api.mistral.ai /v1", "space"),
        ("http://api.mistral.ai/v1", "plain http"),
        ("ftp://api.mistral.ai/v1", "not a web address"),
        ("https://api.mistral.ai:99999/v1", "not a valid URL"),
        ("https:///v1", "not a web address"),
        ("https://api.mistral.ai/v1#models", "fragment (#models), which is never sent"),
        ("https://api.mistral.ai:0/v1", "port 0, which no server listens on"),
    ],
)
def test_urls_that_parsers_could_read_two_ways_are_refused(url, words):
    assert words in safety.url_problem(url)


def test_listed_hosts_are_allowed_exactly_as_written(settings):
    assert safety.url_problem("http://127.0.0.1:8765/v1") is None
    assert safety.url_problem("http://localhost:8765/v1") is None
    assert "internal address" in safety.url_problem("https://127.1:8765/v1")  # the same address, not listed


def test_a_name_resolving_inside_the_network_is_refused_on_save_and_before_sending(monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", _resolver({"evil.example.com": ["93.184.215.14", "169.254.169.254"]}))

    problem, warning = safety.url_save_check("https://evil.example.com/v1")
    assert "evil.example.com points to 169.254.169.254, an internal address" in problem and warning is None
    with pytest.raises(ProviderError) as caught:
        safety.destination("https://evil.example.com/v1")
    assert caught.value.kind == ErrorKind.CONFIG


def test_a_name_that_does_not_resolve_is_saved_with_a_warning(monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", _resolver({}))
    problem, warning = safety.url_save_check("https://not-yet.example.com/v1")
    assert problem is None
    assert "does not resolve" in warning and "checked again before each request" in warning


# --- Every URL field, on save -------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_connection_form_refuses_an_internal_base_url(lead_client):
    response = lead_client.post(
        reverse("connectors:new"),
        {
            "name": "Evil",
            "provider": "mistral",
            "base_url": "https://2852039166/v1",
            "api_key": "k" * 20,
            "model": "m",
            "timeout_seconds": "30",
            "max_attempts": "3",
        },
    )
    assert response.status_code == 200
    assert "2852039166 points to 169.254.169.254" in response.content.decode()
    assert not ProviderConnection.objects.exists()


def _connection_form(**fields) -> dict:
    return {"name": "Shop", "provider": "mistral", "base_url": "http://127.0.0.1:8765/v1", "api_key": "k" * 20,
            "model": "m", "timeout_seconds": "30", "max_attempts": "3", **fields}  # fmt: skip


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"base_url": "http://127.0.0.1:8765/v1?key=sk-pasted"}, "8765/v1 has a query (?…) after it. A base URL is"),
        ({"base_url": "http://127.0.0.1:8765/v1#y"}, "fragment (#y)"),
        ({"api_key": "sk-abcdef\r\nX-Evil: 1"}, "a character HTTP headers cannot carry"),
        ({"api_key": "ключ-ключ-ключ"}, "a character HTTP headers cannot carry"),
        ({"api_key": "k" * 100_000}, "The API key is 100,000 characters long; keys are at most 4,096"),
    ],
)
def test_a_connection_that_could_never_be_called_is_refused_when_saved(lead_client, fields, words):
    response = lead_client.post(reverse("connectors:new"), _connection_form(**fields))

    page = html.unescape(response.content.decode())
    assert response.status_code == 200 and words in page
    assert not ProviderConnection.objects.exists()
    if "api_key" in fields:
        assert fields["api_key"] not in page  # a key, even one refused, is never shown back
    assert "sk-pasted" not in page.split('id="id_base_url_error"', 1)[-1].split("</ul>", 1)[0]  # nor, in the
    # message, what may be one pasted into a base URL's query (the field itself keeps what was typed)


@pytest.mark.parametrize(
    ("status", "words"),
    [(404, "not its API root"), (405, "not its API root"), (413, "larger than the provider accepts"),
     (431, "API key is far longer than a key is")],
)  # fmt: skip
def test_a_provider_refusing_the_address_or_the_size_is_explained_as_that_not_as_the_template(status, words):
    help = explain(ErrorKind.BAD_REQUEST, status, "Not Found")
    assert words in help.cause and "template: messages must be a list" not in help.fix


@pytest.mark.django_db
def test_the_connection_form_saves_an_unresolved_name_with_a_warning(lead_client, monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", _resolver({}))
    response = lead_client.post(
        reverse("connectors:new"),
        {
            "name": "Later",
            "provider": "mistral",
            "base_url": "https://llm.internal-corp.example/v1",
            "api_key": "k" * 20,
            "model": "m",
            "timeout_seconds": "30",
            "max_attempts": "3",
        },
        follow=True,
    )
    assert ProviderConnection.objects.filter(name="Later").exists()
    assert "does not resolve. It is saved" in response.content.decode()


@pytest.mark.django_db
def test_the_admin_refuses_an_internal_callback_url_and_graph_url(admin_client, connection, template):
    response = admin_client.post(
        reverse("admin:conversations_integration_add"),
        {"name": "Evil", "callback_url": "https://0x7f000001/hook", "connections": [connection.pk]},
    )
    assert "points to 127.0.0.1, an internal address" in response.content.decode()
    assert not Integration.objects.exists()

    response = admin_client.post(
        reverse("admin:conversations_whatsappchannel_add"),
        {
            "name": "Evil",
            "phone_number_id": "1",
            "verify_token": "v",
            "template": template.pk,
            "connection": connection.pk,
            "variables": "{}",
            "graph_base_url": "https://[::ffff:a9fe:a9fe]",
            "graph_version": "v23.0",
        },
    )
    assert "an internal address" in response.content.decode()


@pytest.mark.django_db
def test_the_commands_refuse_internal_callback_and_graph_urls(connection, template):
    with pytest.raises(CommandError, match="--callback-url: 169.254.169.254 points to"):
        call_command("add_integration", "Evil", connection=[connection.name], callback_url="https://169.254.169.254/")
    with pytest.raises(CommandError, match=r"--graph-base-url: metadata.google.internal is an internal address \("):
        call_command(
            "add_whatsapp_channel",
            "Evil",
            phone_number_id="1",
            app_secret="s",
            access_token="t",
            template=template.name,
            connection=connection.name,
            graph_base_url="https://metadata.google.internal",
        )


# --- Before each request: the checked address is the one connected to ----------------------------------


class _Recorder(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        self.server.seen.append(self.headers.get("Host"))
        body = self.server.name.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _tls_server(address: str, port: int, name: str, certfile: str) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((address, port), _Recorder)
    server.name, server.seen = name, []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certfile)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _self_signed(tmp_path, host: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = tmp_path / f"{host}.pem"
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        + cert.public_bytes(serialization.Encoding.PEM)
    )
    return str(path)


@pytest.fixture
def rebinding(tmp_path, monkeypatch):
    """rebind.test answers 127.0.0.2 (taken for a public address here) to the first lookup and 127.0.0.1 (the
    "metadata service") to every later one; an HTTPS server with a certificate for rebind.test listens on each."""
    certfile = _self_signed(tmp_path, "rebind.test")
    for _ in range(50):  # one port free on both addresses (another process may hold it on 127.0.0.1)
        public = _tls_server("127.0.0.2", 0, "public", certfile)
        port = public.server_port
        try:
            internal = _tls_server("127.0.0.1", port, "internal", certfile)
            break
        except OSError:
            public.shutdown()
            public.server_close()
    answers = iter([["127.0.0.2"]])
    monkeypatch.setattr(socket, "getaddrinfo", _resolver({"rebind.test": lambda: next(answers, ["127.0.0.1"])}))
    monkeypatch.setattr(safety, "is_public", lambda address: address != "127.0.0.1")
    trusting = urllib3.PoolManager(num_pools=4, retries=False, ca_certs=certfile)
    monkeypatch.setattr(http, "pool", lambda kind=None: trusting)
    yield port, public, internal
    for server in (public, internal):
        server.shutdown()
        server.server_close()


def test_a_rebinding_name_is_connected_to_at_the_address_that_was_checked(rebinding):
    port, public, internal = rebinding

    for _ in range(3):
        answer = http.outbound_request("GET", f"https://rebind.test:{port}/x", headers={}, timeout=5)
        assert answer.body == b"public"

    assert internal.seen == []
    assert public.seen == [f"rebind.test:{port}"] * 3  # the name travels in Host (and SNI and the certificate)


def test_after_the_verdict_expires_the_new_answer_is_checked_and_refused(rebinding, monkeypatch):
    port, public, internal = rebinding
    http.outbound_request("GET", f"https://rebind.test:{port}/x", headers={}, timeout=5)
    safety.forget_verdicts()

    with pytest.raises(http.OutboundError) as caught:
        http.outbound_request("GET", f"https://rebind.test:{port}/x", headers={}, timeout=5)
    assert caught.value.kind == ErrorKind.CONFIG and "points to 127.0.0.1" in caught.value.message
    assert internal.seen == []


def test_the_certificate_is_still_checked_against_the_name(tmp_path, monkeypatch):
    certfile = _self_signed(tmp_path, "someone-else.test")
    server = _tls_server("127.0.0.2", 0, "public", certfile)
    monkeypatch.setattr(socket, "getaddrinfo", _resolver({"rebind.test": ["127.0.0.2"]}))
    monkeypatch.setattr(safety, "is_public", lambda address: True)
    trusting = urllib3.PoolManager(num_pools=4, retries=False, ca_certs=certfile)
    monkeypatch.setattr(http, "pool", lambda kind=None: trusting)
    try:
        with pytest.raises(http.OutboundError) as caught:
            http.outbound_request("GET", f"https://rebind.test:{server.server_port}/", headers={}, timeout=5)
        assert caught.value.kind == ErrorKind.NETWORK
        assert server.seen == []
    finally:
        server.shutdown()
        server.server_close()


_real_getaddrinfo = socket.getaddrinfo


def _resolver(names: dict):
    """A getaddrinfo that answers for `names` (a list, or a function giving one per lookup) and passes IP
    literals to the real one; any other name does not resolve."""

    def getaddrinfo(host, port, *args, **kwargs):
        if host in names:
            answer = names[host]() if callable(names[host]) else names[host]
            family = {True: socket.AF_INET6, False: socket.AF_INET}
            return [(family[":" in a], socket.SOCK_STREAM, 6, "", (a, port or 0)) for a in answer] or _no_such_host()
        try:
            socket.inet_pton(socket.AF_INET6 if ":" in str(host) else socket.AF_INET, str(host))
        except OSError:
            _no_such_host()
        return _real_getaddrinfo(host, port, *args, **kwargs)

    return getaddrinfo


def _no_such_host():
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


def _no_lookups(*args, **kwargs):
    raise AssertionError("a URL refused on its face needs no lookup")


# --- Resilience: every checked address is tried, and a resolver's blip is not remembered -----------------


class _Plain(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        self.server.paths.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture
def plain_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Plain)
    server.paths = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_dead_address_among_a_names_addresses_is_skipped(plain_server, settings, monkeypatch):
    settings.ALLOWED_PROVIDER_HOSTS = ["two-addresses.test"]
    # 127.0.0.3 has nothing listening on the port: as an IPv6 address on a machine without IPv6.
    monkeypatch.setattr(socket, "getaddrinfo", _resolver({"two-addresses.test": ["127.0.0.3", "127.0.0.1"]}))

    for _ in range(3):
        answer = http.outbound_request(
            "GET", f"http://two-addresses.test:{plain_server.server_port}/", headers={}, timeout=5
        )
        assert answer.body == b"ok"


def test_a_failed_lookup_is_remembered_for_a_moment_only(plain_server, settings, monkeypatch):
    settings.ALLOWED_PROVIDER_HOSTS = ["flaky-dns.test"]
    answers = iter([[], ["127.0.0.1"]])  # the first lookup fails, as in a resolver's blip
    monkeypatch.setattr(socket, "getaddrinfo", _resolver({"flaky-dns.test": lambda: next(answers)}))
    url = f"http://flaky-dns.test:{plain_server.server_port}/"

    with pytest.raises(http.OutboundError) as caught:
        http.outbound_request("GET", url, headers={}, timeout=5)
    assert caught.value.kind == ErrorKind.NETWORK
    monkeypatch.setattr(safety, "FAILED_LOOKUP_SECONDS", 0.0)  # the moment has passed
    safety._verdicts.clear()

    assert http.outbound_request("GET", url, headers={}, timeout=5).body == b"ok"


def test_a_failed_lookup_is_not_kept_as_long_as_a_good_one():
    assert safety.FAILED_LOOKUP_SECONDS < safety.VERDICT_SECONDS / 10


def test_an_allowlist_entry_with_a_port_allows_that_port_only(settings):
    settings.ALLOWED_PROVIDER_HOSTS = ["localhost:8765", "[::1]:9000", "sandbox.internal"]
    assert safety.url_problem("http://localhost:8765/v1") is None
    assert "plain http" in safety.url_problem("http://localhost:6379/")
    assert safety.url_problem("http://[::1]:9000/v1") is None
    assert safety.url_problem("http://sandbox.internal:1234/v1") is None


def test_a_unicode_path_is_sent_percent_encoded(plain_server):
    answer = http.outbound_request(
        "GET", f"http://127.0.0.1:{plain_server.server_port}/café?q=é", headers={}, timeout=5
    )
    assert answer.body == b"ok" and plain_server.paths == ["/caf%C3%A9?q=%C3%A9"]
