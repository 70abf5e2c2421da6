"""Fault drill: gunicorn + a default Celery worker + a private Redis under simulated annotators,
with the worker killed (-9), Redis stopped and restarted, and a gunicorn worker killed (-9).

Prints 2xx responses, stored votes, distinct assignments, and how long after the last fault
(and after the load stopped) every board was current: the online Elo had applied every vote and
a full recompute covered them. Then checks the stored Elo against an independent replay in the
documented order and the stored boards against a fresh recompute.

    python bench/fault_run.py [--clients 24] [--seconds 180]

Not part of `make bench` (it measures recovery, not speed). Needs PostgreSQL
(BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/arena_bench_fault; dropped and
created) and `redis-server` (started on a free port; nothing else's Redis is touched).
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_voting import PY, ROOT, SEED, _env, _recreate_db, _wait_port  # noqa: E402

PORT = 8766

SECOND_CRITERION = r"""
from arena.models import Criterion, Study
study = Study.objects.get(slug="bench")
study.criteria.add(*Criterion.objects.exclude(slug="aesthetics").order_by("pk")[:1])
print(study.criteria.count())
"""

CHECK = r"""
import json
from collections import defaultdict
from arena.models import Study, Vote
from ratings.models import EloState, LeaderboardResult
from ratings.services import study_recompute
study = Study.objects.get(slug="bench")
out = {"elo_max_diff": 0.0, "elo_counts_match": True, "boards_equal": True}
for state in EloState.objects.filter(study=study):
    ratings = defaultdict(lambda: 1000.0)
    counts = defaultdict(int)
    votes = (Vote.objects.filter(study=study, criterion_id=state.criterion_id, kind="pairwise", is_gold=False,
             annotator__excluded=False).order_by("elo_batch", "id").values_list("generator_left_id", "generator_right_id", "choice"))
    for gl, gr, choice in votes:
        s = {"left": 1.0, "right": 0.0, "tie": 0.5, "bothbad": 0.5 if study.both_bad_as_tie else None}[choice]
        if s is None:
            continue
        e = 1.0 / (1.0 + 10.0 ** ((ratings[gr] - ratings[gl]) / 400.0))
        ratings[gl] += 4.0 * (s - e)
        ratings[gr] -= 4.0 * (s - e)
        counts[gl] += 1
        counts[gr] += 1
    stored = {int(g): v for g, v in state.ratings.items()}
    out["elo_counts_match"] &= stored.keys() == ratings.keys() and all(stored[g][1] == counts[g] for g in counts)
    out["elo_max_diff"] = max([out["elo_max_diff"]] + [abs(stored[g][0] - ratings[g]) for g in ratings])
late = 0
for state in EloState.objects.filter(study=study):
    top = 0
    for vid in Vote.objects.filter(study=study, criterion_id=state.criterion_id).order_by("elo_batch", "id").values_list("id", flat=True):
        late += vid < top
        top = max(top, vid)
out["votes_entering_elo_after_a_higher_id"] = late
before = {(r.criterion_id, r.category): r.data for r in LeaderboardResult.objects.filter(study=study)}
study_recompute(study_id=study.pk)
after = {(r.criterion_id, r.category): r.data for r in LeaderboardResult.objects.filter(study=study)}
out["boards_equal"] = before == after
out["boards"] = len(after)
print(json.dumps(out))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _client(args) -> dict:
    """Simulated annotators (threads of one process): each votes as fast as answered, recording
    the assignment of every 2xx vote."""
    tokens, stop_at = args
    res = {"answered": [], "codes": {}, "errors": 0}
    lock = threading.Lock()

    def run(token):
        rng = random.Random(token)
        headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
        conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
        task = None
        while time.time() < stop_at:
            try:
                if task is None:
                    conn.request("GET", "/api/studies/bench/next-task/", headers=headers)
                else:
                    answer = rng.choice({"likert": ["1", "2", "3", "4", "5"], "binary": ["good", "bad"],
                                         "pairwise": ["left", "right", "tie", "bothbad"]}[task["kind"]])
                    conn.request("POST", "/api/studies/bench/votes/", body=json.dumps(
                        {"assignment": task["assignment"], "answer": answer}), headers=headers)
                r = conn.getresponse()
                body = r.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
                with lock:
                    res["errors"] += 1
                task = None
                time.sleep(0.05)
                continue
            posted = task is not None
            with lock:
                res["codes"][r.status] = res["codes"].get(r.status, 0) + 1
                if posted and 200 <= r.status < 300:
                    res["answered"].append(task["assignment"])
            if 200 <= r.status < 300:
                payload = json.loads(body)
                task = (payload["next"] if posted else payload).get("task")
            else:
                task = None
        conn.close()

    threads = [threading.Thread(target=run, args=(t,)) for t in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return res


class Redis:
    def __init__(self, workdir: str):
        self.port, self.workdir, self.proc = free_port(), workdir, None

    def start(self):
        self.proc = subprocess.Popen(
            [shutil.which("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.workdir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(self.port)

    def kill(self):
        self.proc.kill()
        self.proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=24)
    ap.add_argument("--seconds", type=float, default=180)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--generators", type=int, default=8)
    ap.add_argument("--prompts", type=int, default=100)
    a = ap.parse_args()
    if not shutil.which("redis-server"):
        raise SystemExit("fault_run: redis-server not found")
    db_url = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/arena_bench_fault")
    _recreate_db(db_url)
    work = tempfile.mkdtemp(prefix="fault-run-")
    redis = Redis(work)
    redis.start()
    env = _env(db_url, f"redis://127.0.0.1:{redis.port}/0", str(Path(work) / "media"))
    env.update(ARENA_SWEEP_SECONDS="5", ARENA_DERIVATION_STALE_SECONDS="15")
    subprocess.run([PY, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
    seed = subprocess.run([PY, "manage.py", "shell", "-c", SEED.replace("sys.argv[1:4]", f"[{a.generators}, {a.prompts}, {a.clients}]")],
                          cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    tokens = json.loads(seed.stdout.strip().splitlines()[-1])
    subprocess.run([PY, "manage.py", "shell", "-c", SECOND_CRITERION], cwd=ROOT, env=env, check=True, capture_output=True)

    def start_worker():
        return subprocess.Popen(
            [PY, "-m", "celery", "-A", "arenasite", "worker", "-Q", "default", "-c", "2", "-l", "WARNING",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT, env=env, stdout=open(Path(work) / "worker.log", "a"), stderr=subprocess.STDOUT)

    web = subprocess.Popen([PY, "-m", "gunicorn", "arenasite.wsgi", "-b", f"127.0.0.1:{PORT}", "-w", "4", "-k", "gthread",
                            "--threads", "4", "--log-level", "warning"], cwd=ROOT, env=env)
    worker = start_worker()
    import psycopg

    db = psycopg.connect(db_url, autocommit=True)

    def current(upto_vote_id: int | None = None) -> bool:
        """Every vote (up to an id) is in the Elo and in a finished recompute that started after it."""
        cond = "" if upto_vote_id is None else f" AND id <= {int(upto_vote_id)}"
        if db.execute(f"SELECT 1 FROM arena_vote WHERE NOT elo_applied{cond} LIMIT 1").fetchone():
            return False
        row = db.execute("SELECT requested_at, running, started_at, finished_at FROM ratings_recomputestate").fetchone()
        last = db.execute(f"SELECT max(created_at) FROM arena_vote WHERE true{cond}").fetchone()[0]
        if row is None or last is None:
            return False
        requested_at, running, started_at, finished_at = row
        if upto_vote_id is None and (requested_at is not None or running):
            return False
        return started_at is not None and started_at > last and finished_at is not None and finished_at >= started_at

    faults: list[tuple[float, str]] = []
    try:
        _wait_port(PORT)
        time.sleep(2)
        t0 = time.time()
        stop_at = t0 + a.seconds
        chunks = [tokens[i::a.procs] for i in range(a.procs)]
        pool = mp.get_context("fork").Pool(a.procs)
        load = pool.map_async(_client, [(c, stop_at) for c in chunks])

        def at(frac: float):
            time.sleep(max(0.0, t0 + a.seconds * frac - time.time()))

        at(0.17)
        kids = children(worker.pid)
        for pid in [worker.pid, *kids]:
            os.kill(pid, signal.SIGKILL)
        worker.wait(10)
        faults.append((time.time(), "celery worker kill -9"))
        at(0.22)
        worker = start_worker()
        faults.append((time.time(), "celery worker restarted"))
        at(0.39)
        victim = children(web.pid)[0]
        os.kill(victim, signal.SIGKILL)
        faults.append((time.time(), f"gunicorn worker {victim} kill -9"))
        at(0.61)
        redis.kill()
        faults.append((time.time(), "redis stopped"))
        at(0.67)
        redis.start()
        faults.append((time.time(), "redis restarted"))
        last_fault = time.time()
        last_vote_at_fault = db.execute("SELECT coalesce(max(id), 0) FROM arena_vote").fetchone()[0]
        caught_up_after_fault = None
        while caught_up_after_fault is None and time.time() - last_fault < 300:
            if current(last_vote_at_fault):
                caught_up_after_fault = time.time() - last_fault
            time.sleep(0.5)
        parts = load.get()
        pool.close()
        load_end = time.time()
        caught_up_after_load = None
        while caught_up_after_load is None and time.time() - load_end < 300:
            if current():
                caught_up_after_load = time.time() - load_end
            time.sleep(0.5)
        votes, distinct = db.execute("SELECT count(*), count(DISTINCT assignment_id) FROM arena_vote").fetchone()
        stored = {str(r[0]) for r in db.execute("SELECT assignment_id FROM arena_vote")}
        pairwise = db.execute("SELECT count(*) FROM arena_vote WHERE kind = 'pairwise'").fetchone()[0]
    finally:
        for p in (web, worker):
            p.send_signal(signal.SIGTERM)
        for p in (web, worker):
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
    check = subprocess.run([PY, "manage.py", "shell", "-c", CHECK], cwd=ROOT, env=env, capture_output=True, text=True)
    redis.kill()
    answered = [x for p in parts for x in p["answered"]]
    codes: dict = {}
    for p in parts:
        for k, v in p["codes"].items():
            codes[k] = codes.get(k, 0) + v
    print(f"fault drill: {a.clients} annotators, {a.seconds:.0f} s, gunicorn 4x4 gthread, default worker -c 2, PostgreSQL, private Redis")
    for t, what in faults:
        print(f"  t={t - t0:6.1f} s  {what}")
    print(f"  responses by status: {dict(sorted(codes.items()))}; connection errors: {sum(p['errors'] for p in parts)}")
    print(f"  2xx vote responses: {len(answered)} ({len(set(answered))} distinct assignments)")
    print(f"  votes stored: {votes} ({pairwise} pairwise); distinct assignments voted: {distinct}; "
          f"2xx votes missing: {len(set(answered) - stored)}; duplicated: {votes - distinct}; "
          f"stored without a 2xx (answer lost with a killed gunicorn worker): {len(stored - set(answered))}")
    fmt = lambda x: "never (300 s)" if x is None else f"{x:.1f} s"  # noqa: E731
    print(f"  every vote up to the last fault in the Elo and in a finished recompute: {fmt(caught_up_after_fault)} after the last fault")
    print(f"  every board current after the load stopped: {fmt(caught_up_after_load)}")
    print(f"  replay and fresh recompute: {check.stdout.strip().splitlines()[-1] if check.returncode == 0 else check.stderr[-2000:]}")


if __name__ == "__main__":
    main()
