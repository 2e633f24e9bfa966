"""Quiet request logging: answers that are part of how Switchboard works are not reported as faults.

Django logs every 4xx at WARNING and every 5xx at ERROR, a refused page with its whole traceback. A Support
staff member opening an Admin's page (403), or the drop-in API passing on a provider's failure (502, 503:
the call's own log line says what failed) is not a fault of Switchboard; the line stays, at INFO and without
the traceback, and a real 500 is still an ERROR with its traceback.
"""

from __future__ import annotations

import logging

EXPECTED = {403, 502, 503}


class ExpectedAnswers(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if status in EXPECTED:
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        elif record.name == "django.security.DisallowedHost":
            # Anyone can send any Host: one line, not an ERROR with a traceback per request (the attack run's
            # filled the log). Still a WARNING: a proxy sending the wrong Host is worth seeing.
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True
