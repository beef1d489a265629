"""gunicorn's threaded worker, leaving a new connection a moment to idle workers while busy."""

import time

from gunicorn.workers import gthread

# Every worker polls the shared listening socket and the first to wake takes each new
# connection, often the same worker twice: two clients' requests then share one interpreter
# (one GIL) while the other workers idle, and CPU-bound requests (STOW-RS) run at half speed
# (seen with `ss -tnp` during bench_vs_orthanc.py). A worker with requests in progress waits
# this long per request (at most MAX_ACCEPT_DELAY) before accepting, so an idle one takes it.
BUSY_ACCEPT_DELAY = 0.002
MAX_ACCEPT_DELAY = 0.01


class ThreadWorker(gthread.ThreadWorker):
    """gthread, counting its requests in progress (all counted on the worker's main loop)."""

    in_flight = 0

    def enqueue_req(self, conn) -> None:
        self.in_flight += 1
        super().enqueue_req(conn)

    def finish_request(self, conn, fs) -> None:
        self.in_flight -= 1
        super().finish_request(conn, fs)

    def accept(self, listener) -> None:
        if self.in_flight:
            time.sleep(min(BUSY_ACCEPT_DELAY * self.in_flight, MAX_ACCEPT_DELAY))
        super().accept(listener)  # EAGAIN (ignored by gthread) when an idle worker took it
