"""A small TCP and UDP echo service (RFC 862) for probe targets.

The testbed's guests run busybox's built-in echo; this one serves tests and
operators who want a probe target on a host they control.
"""

from __future__ import annotations

import selectors
import socket
import threading


class EchoServer:
    """Echo every byte/datagram back on ``address`` until ``stop()``."""

    def __init__(self, address: str = "127.0.0.1", tcp_port: int = 0, udp_port: int = 0) -> None:
        self._selector = selectors.DefaultSelector()
        self._tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._tcp.bind((address, tcp_port))
        self._tcp.listen(64)
        self._tcp.setblocking(False)
        self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._udp.bind((address, udp_port))
        self._udp.setblocking(False)
        self.tcp_port = self._tcp.getsockname()[1]
        self.udp_port = self._udp.getsockname()[1]
        self._selector.register(self._tcp, selectors.EVENT_READ, "accept")
        self._selector.register(self._udp, selectors.EVENT_READ, "datagram")
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="echo-server", daemon=True)

    def start(self) -> EchoServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()
        self._selector.close()

    def serve_forever(self) -> None:
        self._loop()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            for key, _mask in self._selector.select(0.2):
                if key.data == "accept":
                    self._accept()
                elif key.data == "datagram":
                    self._echo_datagrams()
                else:
                    self._echo_stream(key.fileobj, key.data)

    def _accept(self) -> None:
        try:
            conn, _peer = self._tcp.accept()
        except BlockingIOError:
            return
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.setblocking(False)
        self._selector.register(conn, selectors.EVENT_READ, bytearray())

    def _echo_datagrams(self) -> None:
        while True:
            try:
                data, peer = self._udp.recvfrom(65535)
            except BlockingIOError:
                return
            try:
                self._udp.sendto(data, peer)
            except OSError:
                continue

    def _echo_stream(self, conn: socket.socket, pending: bytearray) -> None:
        try:
            data = conn.recv(65536)
        except BlockingIOError:
            data = None
        except OSError:
            data = b""
        if data == b"":
            self._selector.unregister(conn)
            conn.close()
            return
        if data:
            pending += data
        try:
            sent = conn.send(pending) if pending else 0
        except BlockingIOError:
            sent = 0
        except OSError:
            self._selector.unregister(conn)
            conn.close()
            return
        del pending[:sent]
        # Wait for writability only while something is left to echo.
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if pending else 0)
        self._selector.modify(conn, events, pending)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="rally-lm-echo", description=__doc__)
    parser.add_argument("--address", default="0.0.0.0")
    parser.add_argument("--tcp", type=int, default=7, help="TCP echo port")
    parser.add_argument("--udp", type=int, default=7, help="UDP echo port")
    args = parser.parse_args(argv)
    server = EchoServer(args.address, args.tcp, args.udp)
    print(f"echo on {args.address} tcp/{server.tcp_port} udp/{server.udp_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
