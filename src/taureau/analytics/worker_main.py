"""A warm pool worker: `python -m taureau.analytics.worker_main FD NAME`.

Reads batches from the socket FD (a reader thread drains it at once, so the driver's sends
never wait on a running task), runs them in order, writes outcomes back. Exits when the
driver closes the socket, which includes the driver dying."""

from __future__ import annotations

import queue
import signal
import sys
import threading
from multiprocessing.connection import Connection

from taureau.analytics import wire
from taureau.analytics.runner import Outbox, Runner

READY = b"ready"


def main(fd: int, name: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in the driver's terminal is the driver's
    conn = Connection(fd)
    inbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()

    def read() -> None:
        try:
            while True:
                inbox.put(conn.recv_bytes())
        except (EOFError, OSError):
            inbox.put(None)

    threading.Thread(target=read, name="batches", daemon=True).start()
    runner = Runner(name)
    try:
        conn.send_bytes(READY)
    except OSError:
        return  # a replacement started as its executor closed: nobody wants it

    def send(groups: list[wire.Group]) -> None:
        conn.send_bytes(wire.encode_groups(groups))

    outbox = Outbox(send, name, background=True)
    try:
        while (data := inbox.get()) is not None:
            batches = wire.decode_batches(data)
            for i, batch in enumerate(batches):
                # Another batch already here: this one's outcomes may wait to travel with its.
                runner.run_batch(batch, outbox, more=i + 1 < len(batches) or not inbox.empty())
    except OSError:
        pass  # the driver closed the socket while outcomes were on their way: it wants none


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
