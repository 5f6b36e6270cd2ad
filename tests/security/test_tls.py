"""TLS end to end: pulsar+ssl:// and https:// beside the plain ports, hostname validation
against the test CA, mutual TLS (`AuthenticationTLS`, role = the certificate's CN) on both,
certificates from another CA or expired refused, and a renewed certificate served without a
restart."""

from __future__ import annotations

import shutil
import socket
import ssl
import time

import httpx
import pulsar
import pytest
from cryptography import x509

from tests.e2e.harness import Standalone, free_port
from tests.security.certs import Authority
from tests.security.helpers import LOGGER, Keys, round_trip


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    root = tmp_path_factory.mktemp("pki")
    ca = Authority(root)
    other = Authority(root, "other-ca")
    return root, ca, other


@pytest.fixture(scope="module")
def server(tmp_path_factory, pki):
    root, ca, _ = pki
    keys = Keys(tmp_path_factory.mktemp("keys"))
    cert, key = ca.issue("localhost", server=True)
    # The served files are copies, so the reload test can replace them.
    served_cert, served_key = root / "served.crt", root / "served.key"
    shutil.copy(cert, served_cert)
    shutil.copy(key, served_key)
    tls_port, https_port = free_port(), free_port()
    s = Standalone(
        tmp_path_factory.mktemp("tls") / "data", "--no-functions", "--auth", "token,tls",
        "--token-secret-key", str(keys.secret_file), "--superuser-roles", "admin",
        "--tls-cert-file", str(served_cert), "--tls-key-file", str(served_key),
        "--tls-trust-certs-file", str(ca.cert_file), "--broker-port-tls", str(tls_port),
        "--web-port-tls", str(https_port), "--tls-cert-refresh-check", "0.5",
    ).start()
    s.tls_url = f"pulsar+ssl://127.0.0.1:{tls_port}"
    s.https_url = f"https://127.0.0.1:{https_port}"
    s.https_port = https_port
    s.tls_port = tls_port
    s.keys = keys
    s.served = (served_cert, served_key)
    yield s
    s.stop()


def _https(ca_file, cert=None, key=None) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(ca_file))
    if cert is not None:
        context.load_cert_chain(str(cert), str(key))
    return httpx.Client(verify=context)


def _client(server, ca_file, auth, timeout: int = 10) -> pulsar.Client:
    return pulsar.Client(server.tls_url, authentication=auth, tls_trust_certs_file_path=str(ca_file),
                         tls_validate_hostname=True, operation_timeout_seconds=timeout, logger=LOGGER)


def _refused(c: pulsar.Client, topic: str) -> None:
    """The client cannot create a producer: its TLS handshake or its credentials fail."""
    try:
        with pytest.raises((pulsar.Timeout, pulsar.ConnectError)):
            c.create_producer(topic)
    finally:
        c.close()


def test_token_over_tls(server, pki):
    _, ca, _ = pki
    auth = pulsar.AuthenticationToken(server.keys.token("admin"))
    assert round_trip(_client(server, ca.cert_file, auth), "tls-token") == b"tls-token"


def test_mutual_tls_role_is_the_common_name(server, pki):
    root, ca, _ = pki
    cert, key = ca.issue("app1")
    with _https(ca.cert_file) as http:
        granted = http.post(f"{server.https_url}/admin/v2/namespaces/public/default/permissions/app1",
                            json=["produce", "consume"],
                            headers={"Authorization": f"Bearer {server.keys.token('admin')}"})
        assert granted.status_code == 204, granted.text
    auth = pulsar.AuthenticationTLS(str(cert), str(key))
    assert round_trip(_client(server, ca.cert_file, auth), "tls-mutual") == b"tls-mutual"
    with _https(ca.cert_file, cert, key) as http:
        # The role the certificate proved, as the REST API saw it (not a superuser).
        response = http.get(f"{server.https_url}/admin/v2/tenants")
        assert response.status_code == 403, response.text
        assert response.json()["reason"] == "role app1 is not a superuser"


@pytest.mark.parametrize("which", ["other CA", "expired"])
def test_bad_client_certificates_are_refused(server, pki, which):
    root, ca, other = pki
    cert, key = (other.issue("mallory") if which == "other CA" else ca.issue("app1", expired=True, tag="-old"))
    _refused(_client(server, ca.cert_file, pulsar.AuthenticationTLS(str(cert), str(key)), timeout=2),
             f"refused-{which.replace(' ', '-')}")
    with _https(ca.cert_file, cert, key) as http, \
            pytest.raises(httpx.HTTPError):
        r = http.get(f"{server.https_url}/admin/v2/tenants")
        # TLS 1.3 may report a refused certificate on the first read: either way, no answer.
        assert r.status_code == 401


def test_client_that_does_not_trust_the_server_fails(server, pki):
    _, _, other = pki
    _refused(_client(server, other.cert_file, pulsar.AuthenticationToken(server.keys.token("admin")), timeout=2),
             "untrusted")
    with pytest.raises(httpx.ConnectError):
        _https(other.cert_file).get(f"{server.https_url}/admin/v2/tenants")


def test_https_needs_credentials(server, pki):
    _, ca, _ = pki
    with _https(ca.cert_file) as http:
        assert http.get(f"{server.https_url}/admin/v2/tenants").status_code == 401
        ok = http.get(f"{server.https_url}/admin/v2/tenants",
                      headers={"Authorization": f"Bearer {server.keys.token('admin')}"})
        assert ok.status_code == 200 and "public" in ok.json()


def _served_serial(port: int, ca_file) -> int:
    context = ssl.create_default_context(cafile=str(ca_file))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        der = tls.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der).serial_number


def _replace(server, cert, key) -> None:
    served_cert, served_key = server.served
    shutil.copy(key, served_key)
    shutil.copy(cert, served_cert)


def _wait_for_serial(port, ca_file, serial, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    seen = _served_serial(port, ca_file)
    while seen != serial and time.monotonic() < deadline:
        time.sleep(0.2)
        seen = _served_serial(port, ca_file)
    return seen


def test_renewed_certificate_is_served_without_restart(server, pki):
    _, ca, _ = pki
    before = _served_serial(server.tls_port, ca.cert_file)
    cert, key = ca.issue("localhost", server=True, tag="-renewed")
    _replace(server, cert, key)
    renewed = ca.serial_of(cert)
    assert renewed != before
    assert _wait_for_serial(server.tls_port, ca.cert_file, renewed) == renewed
    assert _wait_for_serial(server.https_port, ca.cert_file, renewed) == renewed
    auth = pulsar.AuthenticationToken(server.keys.token("admin"))
    assert round_trip(_client(server, ca.cert_file, auth), "after-renewal") == b"after-renewal"


def test_expired_server_certificate_is_refused_by_clients(server, pki):
    _, ca, _ = pki
    good = server.served[0].read_bytes(), server.served[1].read_bytes()
    cert, key = ca.issue("localhost", server=True, expired=True, tag="-expired")
    _replace(server, cert, key)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                _served_serial(server.tls_port, ca.cert_file)
            except ssl.SSLCertVerificationError as exc:
                assert "expired" in str(exc)
                break
            time.sleep(0.2)
        else:
            pytest.fail("the expired certificate was never served")
        _refused(_client(server, ca.cert_file, pulsar.AuthenticationToken(server.keys.token("admin")), timeout=2),
                 "expired-server")
    finally:
        server.served[1].write_bytes(good[1])
        server.served[0].write_bytes(good[0])
