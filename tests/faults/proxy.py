"""A thread-based TCP proxy that misbehaves on demand, in front of S3 (moto) or the provider.

Modes, switchable while running: `pass`, `reset` (RST at once), `stall` (hold the connection,
answer nothing), `http500` (a 500 instead of forwarding), `cut` (forward the answer's first
bytes, then drop the connection mid-body), `drip` (forward the answer a few bytes at a time).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time

MODES = ("pass", "reset", "stall", "http500", "cut", "drip")
_500 = (b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
        b"Content-Length: 2\r\nConnection: close\r\n\r\n{}")


class FaultProxy:
    """127.0.0.1:<port> → upstream; every connection is handled by its own daemon thread."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.mode = "pass"
        self.connections = 0
        self.hits = 0  # requests or answers the current fault was applied to
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._socks: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name="fault-proxy", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set(self, mode: str) -> None:
        assert mode in MODES, mode
        self.mode = mode

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()
        with self._lock:
            for sock in self._socks:
                with contextlib.suppress(OSError):
                    sock.close()

    def _track(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._socks.add(sock)
        return sock

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(self._track(client),),
                             daemon=True).start()

    def _hit(self) -> None:
        with self._lock:
            self.hits += 1

    def _serve(self, client: socket.socket) -> None:
        """The mode is read at every request and every answer chunk, so a fault also hits
        connections a client pooled (keep-alive) before it was switched on."""
        try:
            upstream = self._track(socket.create_connection(self.upstream, timeout=30))
        except OSError:
            client.close()
            return
        down = threading.Thread(target=self._answers, args=(upstream, client), daemon=True)
        down.start()
        try:
            while True:
                chunk = client.recv(65536)
                if not chunk:
                    break
                mode = self.mode
                if mode == "reset":
                    self._hit()
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                      struct.pack("ii", 1, 0))
                    break
                if mode == "stall":
                    self._hit()
                    while not self._stop.is_set() and self.mode == "stall":
                        time.sleep(0.05)
                    break
                if mode == "http500":
                    self._hit()
                    client.sendall(_500)
                    break
                upstream.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.close()
            down.join(5)

    def _answers(self, upstream: socket.socket, client: socket.socket) -> None:
        try:
            while True:
                chunk = upstream.recv(65536)
                if not chunk:
                    break
                mode = self.mode
                if mode == "cut":  # a few bytes of the answer, then the connection drops
                    self._hit()
                    client.sendall(chunk[:300])
                    break
                if mode == "drip":
                    self._hit()
                    for i in range(0, len(chunk), 512):
                        client.sendall(chunk[i:i + 512])
                        time.sleep(0.005)
                else:
                    client.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
