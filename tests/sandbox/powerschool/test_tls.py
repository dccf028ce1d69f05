"""sandbox/tls.py: one CA created once and reused, server certificates a verifying client accepts."""

import multiprocessing
import socket
import ssl
import threading

import pytest

from sandbox.tls import ensure_ca, server_certificate


def test_ca_is_created_once_and_reused(tmp_path):
    first = ensure_ca(tmp_path)
    content = first.read_bytes()
    assert first == tmp_path / "ca.pem"
    assert (tmp_path / "ca-key.pem").stat().st_mode & 0o777 == 0o600
    assert ensure_ca(tmp_path).read_bytes() == content


def test_server_certificate_is_reused_for_the_same_hostnames(tmp_path):
    certificate, key = server_certificate(tmp_path)
    again, again_key = server_certificate(tmp_path)
    assert (again, again_key) == (certificate, key)
    assert certificate.read_bytes() == again.read_bytes()


def test_server_certificate_needs_a_hostname(tmp_path):
    with pytest.raises(ValueError, match="hostname"):
        server_certificate(tmp_path, hostnames=())


def _serve_once(context: ssl.SSLContext, listener: socket.socket) -> None:
    connection, _ = listener.accept()
    with context.wrap_socket(connection, server_side=True) as tls:
        tls.sendall(b"hello")


@pytest.mark.parametrize("hostname", ["localhost", "127.0.0.1"])
def test_a_verifying_client_accepts_the_server_certificate(tmp_path, hostname):
    certificate, key = server_certificate(tmp_path)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(certificate, key)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        thread = threading.Thread(target=_serve_once, args=(server_context, listener), daemon=True)
        thread.start()
        client_context = ssl.create_default_context(cafile=str(ensure_ca(tmp_path)))
        with (
            socket.create_connection(listener.getsockname()) as raw,
            client_context.wrap_socket(raw, server_hostname=hostname) as tls,
        ):
            assert tls.recv(5) == b"hello"
        thread.join(5)


def test_a_client_that_does_not_trust_the_sandbox_ca_is_refused(tmp_path):
    certificate, key = server_certificate(tmp_path / "one")
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(certificate, key)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        thread = threading.Thread(target=lambda: _ignore_errors(server_context, listener), daemon=True)
        thread.start()
        other_ca = ensure_ca(tmp_path / "other")
        client_context = ssl.create_default_context(cafile=str(other_ca))
        with (
            socket.create_connection(listener.getsockname()) as raw,
            pytest.raises(ssl.SSLCertVerificationError),
        ):
            client_context.wrap_socket(raw, server_hostname="localhost")
        thread.join(5)


def _ignore_errors(context, listener):
    try:
        _serve_once(context, listener)
    except (ssl.SSLError, OSError):
        pass


def _make_certificate(directory: str, queue) -> None:
    certificate, _ = server_certificate(directory)
    queue.put((ensure_ca(directory).read_bytes(), certificate.read_bytes()))


def test_concurrent_processes_agree_on_one_ca_and_certificate(tmp_path):
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    processes = [context.Process(target=_make_certificate, args=(str(tmp_path), queue)) for _ in range(4)]
    for process in processes:
        process.start()
    results = [queue.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(30)
    assert len({ca for ca, _ in results}) == 1
    assert len({certificate for _, certificate in results}) == 1
