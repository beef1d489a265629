"""Production web server settings: `gunicorn -c gunicorn.conf.py anim_gateway.wsgi`."""

import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
# Threaded workers keep viewers' connections alive between requests (sync workers close
# every connection, so each DICOMweb request would pay a new TCP connection).
worker_class = "anim_gateway.gunicorn_worker.ThreadWorker"  # gthread, balanced
workers = int(os.environ.get("GUNICORN_WORKERS", (os.cpu_count() or 1) * 2))
threads = int(os.environ.get("GUNICORN_THREADS", 4))
keepalive = 30
# The workers' heartbeat to the arbiter (a worker silent this long is restarted). It does
# not bound a request: a client that stops sending mid-body holds its thread, so the
# reverse proxy must buffer request bodies or time them out.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", 900))
graceful_timeout = 30
# Import the code once, before forking: workers start fast and share its memory.
preload_app = True
# Behind the hospital's reverse proxy, which terminates TLS: X-Forwarded-Proto is trusted
# from these addresses (the scheme). REMOTE_ADDR stays the proxy's address, and the audit
# log records it as the client's (docs/configuration.md).
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1")
accesslog = None  # access is in the audit log; the proxy keeps its own request log
logger_class = "anim_gateway.gunicorn_logging.Logger"  # national identifiers redacted
