#!/usr/bin/env python3
"""A TCP relay for ssh's ProxyCommand that adds a fixed latency in each direction.

    delayproxy.py HOST PORT DELAY_MS

Relays stdin to HOST:PORT and HOST:PORT to stdout; every chunk is written DELAY_MS after it
was read, in order, so the link keeps its bandwidth and gains DELAY_MS each way (2 x DELAY_MS
per round trip). scripts/bench uses it where tc netem is not available (a kernel without
sch_netem): ``sshfs -o ProxyCommand='python3 delayproxy.py 127.0.0.1 PORT 1'``.
"""

from __future__ import annotations

import os
import queue
import socket
import sys
import threading
import time
from typing import Callable


def relay(read: Callable[[], bytes], write: Callable[[bytes], None], close: Callable[[], None],
          delay: float) -> threading.Thread:
    """Read chunks in one thread, write each one ``delay`` seconds later in another."""
    pending: queue.SimpleQueue = queue.SimpleQueue()

    def reader() -> None:
        while True:
            try:
                data = read()
            except OSError:
                data = b""
            pending.put((time.monotonic() + delay, data))
            if not data:
                return

    def writer() -> None:
        while True:
            due, data = pending.get()
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if not data:
                close()
                return
            try:
                write(data)
            except OSError:
                close()
                return

    threading.Thread(target=reader, daemon=True).start()
    out = threading.Thread(target=writer, daemon=True)
    out.start()
    return out


def write_fd(fd: int) -> Callable[[bytes], None]:
    def write(data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    return write


def main() -> None:
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    host, port, delay = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]) / 1000
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close_up() -> None:
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close_down() -> None:
        os.close(1)

    relay(lambda: os.read(0, 1 << 16), sock.sendall, close_up, delay)
    down = relay(lambda: sock.recv(1 << 16), write_fd(1), close_down, delay)
    down.join()  # the server closed (or stdout did): the session is over
    os._exit(0)


if __name__ == "__main__":
    main()
