"""gunicorn's error and access logs, with national identifiers redacted (URLs carry them)."""

from gunicorn import glogging

from anim_gateway.logfilters import RedactNationalIds

_REDACT = RedactNationalIds()  # one instance: addFilter skips it on a configuration reload


class Logger(glogging.Logger):
    def setup(self, cfg) -> None:
        super().setup(cfg)
        # gunicorn's loggers have handlers of their own and do not propagate to the root's
        # redacting one: a malformed request line ("Invalid HTTP request line: 'GET
        # /patients/...'") or a request that fails outside Django is logged with its URL.
        for log in (self.error_log, self.access_log):
            log.addFilter(_REDACT)
