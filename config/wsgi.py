"""The WSGI application the web server runs (`gunicorn -c config/gunicorn.py config.wsgi`).

Django imports the URLconf, and with it every view module, on a process's first request. gunicorn starts its
processes without a request in sight, so each one's first request paid for those imports: about 50 ms on the
2-core benchmark machine, against 1-2 ms once warm, and an API client's first request after every deploy or
worker restart waited for it. The imports happen here instead, as the process starts.
"""

import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")

application = get_wsgi_application()
get_resolver().url_patterns  # noqa: B018 - imported now, not on the first request
