"""Django's PostgreSQL backend whose per-request health check asks the socket, not the server.

With CONN_HEALTH_CHECKS, Django sends ``SELECT 1`` before the first query of every request
that reuses a connection: a round trip to a backend that has been idle since the last
request, the dearest kind (bench/README.md). A server that ends a connection (shutdown,
restart, an administrator's or idle_session_timeout's termination) first sends its reason
or closes the socket, and either makes an idle connection readable. So an idle connection
with nothing to read is taken as it is; one with something to read, or in any state but
idle, gets Django's own check. A connection whose host vanished without a word passes, as
it would hang in ``SELECT 1`` too; its first query then fails and Django reconnects on the
next request (errors_occurred).
"""

import select

from django.db.backends.postgresql import base
from psycopg import pq


class DatabaseWrapper(base.DatabaseWrapper):
    def close_if_health_check_failed(self) -> None:
        if self.health_check_enabled and not self.health_check_done and self.quietly_idle():
            self.health_check_done = True
            return
        super().close_if_health_check_failed()

    def quietly_idle(self) -> bool:
        """Open, outside any transaction, with nothing from the server waiting to be read."""
        raw = self.connection
        if raw is None or raw.closed:
            return False
        if raw.pgconn.status != pq.ConnStatus.OK:
            return False
        if raw.pgconn.transaction_status != pq.TransactionStatus.IDLE:
            return False
        poller = select.poll()
        poller.register(raw.pgconn.socket, select.POLLIN | select.POLLERR | select.POLLHUP)
        return not poller.poll(0)
