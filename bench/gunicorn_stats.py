"""gunicorn configuration used by bench_voting.py: counts the SQL statements each web worker runs.

Each worker wraps Django's cursor and, every 0.2 s, writes "<statements> <cpu seconds>" to
$BENCH_STATS_DIR/<pid>, so the benchmark can tell statements and CPU per request of a phase.
Not for production: it exists so the benchmark measures, not guesses.
"""

import os
import threading
import time


def post_fork(server, worker):
    from django.db.backends import utils

    counter = {"n": 0}
    lock = threading.Lock()
    execute, executemany = utils.CursorWrapper._execute, utils.CursorWrapper._executemany

    def counted_execute(self, *args, **kwargs):
        with lock:
            counter["n"] += 1
        return execute(self, *args, **kwargs)

    def counted_executemany(self, *args, **kwargs):
        with lock:
            counter["n"] += 1
        return executemany(self, *args, **kwargs)

    utils.CursorWrapper._execute = counted_execute
    utils.CursorWrapper._executemany = counted_executemany
    out = os.environ["BENCH_STATS_DIR"]
    pid = os.getpid()

    def write():
        while True:
            tmp = os.path.join(out, f".{pid}")
            with open(tmp, "w") as fh:
                fh.write(f"{counter['n']} {time.process_time()}")
            os.replace(tmp, os.path.join(out, str(pid)))
            time.sleep(0.2)

    threading.Thread(target=write, daemon=True, name="bench-stats").start()


_request_started = threading.local()
_vote_times: list[float] = []


def pre_request(worker, req):
    _request_started.t = time.perf_counter()


def post_request(worker, req, environ, resp):
    """Time spent in this process on each vote (from its parsed request to its response), written
    with the process's counters: the benchmark tells time in the server from time waiting for it."""
    if req.method == "POST" and req.path.endswith("/votes/"):
        _vote_times.append(time.perf_counter() - _request_started.t)
        if len(_vote_times) % 50 == 0:
            tmp = os.path.join(os.environ["BENCH_STATS_DIR"], f".{os.getpid()}.votes")
            with open(tmp, "w") as fh:
                fh.write(" ".join(f"{x:.5f}" for x in _vote_times))
            os.replace(tmp, os.path.join(os.environ["BENCH_STATS_DIR"], f"votes-{os.getpid()}"))
