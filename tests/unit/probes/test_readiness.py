import socket

from rally_lm.probes import readiness
from rally_lm.probes.echo_server import EchoServer


def unused_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_echo_service_is_answering():
    server = EchoServer().start()
    try:
        assert readiness.answering(["127.0.0.1"], server.udp_port, listen_for=0.5) == \
            {"127.0.0.1"}
        assert readiness.wait_until_answering(["127.0.0.1"], server.udp_port, timeout=5) == []
    finally:
        server.stop()


def test_a_silent_target_is_reported_after_the_timeout():
    port = unused_udp_port()
    assert readiness.answering(["127.0.0.1"], port, listen_for=0.3) == set()
    assert readiness.wait_until_answering(["127.0.0.1"], port, timeout=0.5) == ["127.0.0.1"]
