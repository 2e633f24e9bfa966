"""gunicorn's settings for the web process: `gunicorn -c config/gunicorn.py config.wsgi` (flags override them).

Threads, because a request with `wait` (and every chat completions request) holds its thread until the
worker has answered. Several processes, because a process's threads share one interpreter lock: on the
2-core benchmark machine, eight clients relaying chat completions got 239 requests/s from 4 processes of
8 threads against 192 from 2 of 16, the same 32 requests in flight (bench/relay.py; docs/benchmarks.md).
"""

import multiprocessing
import os

workers = int(os.environ.get("WEB_CONCURRENCY", 2 * multiprocessing.cpu_count()))
threads = 8
