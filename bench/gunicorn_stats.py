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
