"""gunicorn settings for the web processes: `gunicorn -c arenasite/gunicorn.conf.py arenasite.wsgi`.

One process per core, each with 8 threads: a request spends much of its time waiting on
PostgreSQL (a vote's commit waits for its WAL flush), so threads overlap those waits, while
more processes than cores only add context switches. Chosen with bench/bench_voting.py (gthread
2x8 against 4x4, 4x1 and sync workers on 2 cores); WEB_CONCURRENCY and GUNICORN_THREADS
override the counts.
"""

import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY") or len(os.sched_getaffinity(0)))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS") or 8)
keepalive = 5  # seconds an idle keep-alive connection is held (annotators vote every few seconds)


def post_worker_init(worker):
    """Once the app is loaded: its modules, settings and URL tables live as long as the process,
    so the cyclic garbage collector stops re-reading them (gc.freeze), and it runs less often
    (a request allocates thousands of short-lived objects). A full collection then walks only
    what requests left behind, not the whole of Django."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 20, 20)


GC_THRESHOLD = int(os.environ.get("GUNICORN_GC_THRESHOLD") or 20_000)
