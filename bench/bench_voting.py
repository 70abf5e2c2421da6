"""Voting throughput: gunicorn on PostgreSQL, N simulated annotators looping "vote -> next task".

Each simulated annotator fetches a task once, then votes; every vote's response carries the
next task, so one vote is one round trip. Printed side by side with a baseline measured in
the same run under the same load: a bare endpoint that does one database query. For each
phase: requests/s, p50 and p99 latency, SQL statements per request in the web workers, and
CPU milliseconds per request in the web processes and in the database backends serving them (and in the Celery worker keeping Elo current).
At the end every 201 response's vote is looked up in the database (lost) and counted once
(duplicated).

    python bench/bench_voting.py [--annotators 32,128] [--seconds 20]
                                 [--workers N] [--threads N] [--worker-class gthread]

gunicorn runs with arenasite/gunicorn.conf.py unless told otherwise. Needs PostgreSQL
(BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/arena_bench; the database is
dropped and created). Uses Redis for Celery when CELERY_BROKER_URL is set (a default worker
runs to keep Elo current and the vote-to-Elo lag is reported).
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable


def _env(db_url: str, broker: str, media: str) -> dict:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=db_url,
        CELERY_BROKER_URL=broker,
        MEDIA_ROOT=media,
        DEBUG="0",
        SECRET_KEY="bench-secret-key-not-for-production",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        ARENA_HTTPS="0",
        LOG_LEVEL="WARNING",
        ARENA_RECOMPUTE_DEBOUNCE_SECONDS="5",
        ARENA_BOOTSTRAP_ROUNDS="200",
    )
    return env


def _recreate_db(db_url: str) -> None:
    import psycopg

    u = urlparse(db_url)
    name = u.path.lstrip("/")
    admin = db_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


SEED = r"""
import io, json, sys, zipfile, tempfile
from pathlib import Path
from PIL import Image
from django.contrib.auth.models import Group, User
from rest_framework.authtoken.models import Token
from arena.imports import outputs_import
from arena.models import Criterion, Study
n_gen, n_prompts, n_users = map(int, sys.argv[1:4])
study = Study.objects.create(name="Bench", slug="bench", vote_kinds=["pairwise", "likert", "binary"],
                             quota_per_annotator=10**6, overlap_target=3,
                             screen_before_annotators=False)
study.criteria.add(Criterion.objects.get(slug="aesthetics"))
tmp = Path(tempfile.mkdtemp())
rows = []
with zipfile.ZipFile(tmp / "b.zip", "w") as zf:
    for g in range(n_gen):
        for p in range(n_prompts):
            buf = io.BytesIO()
            Image.new("RGB", (64, 64), (g * 30 % 255, p % 255, (g * p) % 255)).save(buf, "PNG")
            zf.writestr(f"{g}-{p}.png", buf.getvalue())
            rows.append({"generator": f"gen-{g:02d}", "prompt": f"bench prompt {p}", "image": f"{g}-{p}.png"})
    zf.writestr("manifest.jsonl", "\n".join(json.dumps(r) for r in rows))
outputs_import(path=tmp / "b.zip", study=study)
from arena.renditions import renditions_make_for_study
renditions_make_for_study(study=study)  # what annotators are shown exists before the clock starts
group = Group.objects.get(name="annotator")
tokens = []
for i in range(n_users):
    u = User.objects.create_user(f"bench{i}", password="x")
    u.groups.add(group)
    tokens.append(Token.objects.create(user=u).key)
print(json.dumps(tokens))
"""


def _client(args) -> dict:
    """One process of simulated annotators (threads), each with its own keep-alive connection."""
    tokens, mode, seconds, warmup, port = args
    results = {"lat": [], "ok": 0, "all": 0, "created": [], "errors": 0, "codes": {}, "no_task": 0}
    lock = threading.Lock()
    start = time.monotonic()
    stop_at = start + warmup + seconds

    def run(token):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
        rng = random.Random(token)
        task = None
        while True:
            now = time.monotonic()
            if now >= stop_at:
                break
            t0 = time.perf_counter()
            sent = None
            try:
                if mode == "baseline":
                    conn.request("GET", "/healthz", headers=headers)
                elif task is None:
                    conn.request("GET", "/api/studies/bench/next-task/", headers=headers)
                else:
                    answer = rng.choice([a for a in task["answers"] if a != "skip"])
                    sent = task["assignment"]
                    conn.request("POST", "/api/studies/bench/votes/", body=json.dumps(
                        {"assignment": sent, "answer": answer}), headers=headers)
                res = conn.getresponse()
                body = res.read()
                status = res.status
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                with lock:
                    results["errors"] += 1
                continue
            dt = time.perf_counter() - t0
            if mode != "baseline":
                payload = json.loads(body) if status < 500 else {}
                if status in (200, 201):
                    nxt = payload.get("next", payload)
                    task = nxt.get("task")
                else:
                    task = None
            with lock:
                results["codes"][status] = results["codes"].get(status, 0) + 1
                results["all"] += 1
                # A round trip is a stored vote (201); asking again for a task when none was left is not one.
                measured = now - start >= warmup
                if measured and (status == 201 or (mode == "baseline" and status == 200)):
                    results["lat"].append(dt)
                    results["ok"] += 1
                if measured and mode != "baseline" and status in (200, 201) and task is None:
                    results["no_task"] += 1
                if status == 201:
                    results["created"].append(sent)
        conn.close()

    threads = [threading.Thread(target=run, args=(t,)) for t in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def _load(tokens, mode, seconds, warmup, procs, port) -> dict:
    chunks = [tokens[i::procs] for i in range(procs)]
    with mp.get_context("fork").Pool(procs) as pool:
        parts = pool.map(_client, [(c, mode, seconds, warmup, port) for c in chunks])
    lat = sorted(x for p in parts for x in p["lat"])
    codes: dict = {}
    for p in parts:
        for k, v in p["codes"].items():
            codes[k] = codes.get(k, 0) + v
    return {
        "rps": len(lat) / seconds,
        "p50": lat[len(lat) // 2] * 1000 if lat else float("nan"),
        "p99": lat[int(len(lat) * 0.99)] * 1000 if lat else float("nan"),
        "all": sum(p["all"] for p in parts),
        "created": [x for p in parts for x in p["created"]],
        "errors": sum(p["errors"] for p in parts),
        "codes": codes,
        "no_task": sum(p["no_task"] for p in parts),
    }


def _ticks(pid: int) -> int:
    """CPU time (user + system, in clock ticks) a live process has used; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def _tree_pids(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


class CpuMeter:
    """CPU used by process trees (gunicorn, Celery) and by the PostgreSQL backends serving one
    database, sampled in the background so backends that come and go are counted too."""

    HZ = os.sysconf("SC_CLK_TCK")

    def __init__(self, db_url: str, roots: dict[str, int]):
        self.db_url, self.roots = db_url, roots
        self.seen: dict[tuple[str, int], int] = {}
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _sample(self, conn, name: str) -> None:
        rows = conn.execute("SELECT pid, application_name FROM pg_stat_activity"
                            " WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchall()
        # Backends are told apart by the application name each side connects with.
        found = {("pg-" + (app.removeprefix("bench-") if app.startswith("bench-") else "other"), pid): _ticks(pid)
                 for pid, app in rows}
        for label, root in self.roots.items():
            for pid in _tree_pids(root):
                found[(label, pid)] = _ticks(pid)
        with self.lock:
            for key, t in found.items():
                if t:
                    self.seen[key] = max(t, self.seen.get(key, 0))

    def _run(self) -> None:
        import psycopg

        with psycopg.connect(self.db_url, autocommit=True) as conn:
            while not self.stop.is_set():
                self._sample(conn, "")
                time.sleep(0.25)

    def snapshot(self) -> dict[str, float]:
        time.sleep(0.6)  # one more sample after the phase
        with self.lock:
            out: dict[str, float] = {}
            for (label, _), t in self.seen.items():
                out[label] = out.get(label, 0.0) + t / self.HZ
        return out


def _server_vote_times(stats_dir: str) -> list[list[float]]:
    """Seconds each web process spent on each vote it served (every 50th written), per process."""
    out = []
    for f in sorted(Path(stats_dir).glob("votes-*")):
        try:
            out.append([float(x) for x in f.read_text().split()])
        except (OSError, ValueError):
            pass
    return out


def _statements(stats_dir: str) -> int:
    total = 0
    for f in Path(stats_dir).iterdir():
        if not f.name.startswith(".") and f.name.isdigit():
            try:
                total += int(f.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    return total


def _measured(db_url, stats_dir, meter, run) -> dict:
    """Run one load phase; add statements and CPU (web, PostgreSQL) per request."""
    time.sleep(0.5)
    s0, c0 = _statements(stats_dir), meter.snapshot()
    res = run()
    time.sleep(0.5)
    s1, c1 = _statements(stats_dir), meter.snapshot()
    n = max(1, res["all"])
    res["statements"] = (s1 - s0) / n
    res["cpu"] = {k: (c1.get(k, 0.0) - c0.get(k, 0.0)) * 1000 / n for k in c1}
    return res


def _wait_port(port, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"server did not start on port {port}")


def _elo_lag_sampler(db_url, stop, lags):
    import psycopg

    with psycopg.connect(db_url, autocommit=True) as conn:
        while not stop.is_set():
            row = conn.execute("SELECT max(id), clock_timestamp() FROM arena_vote WHERE kind='pairwise'").fetchone()
            if not row or row[0] is None:
                time.sleep(0.2)
                continue
            vid, t0 = row[0], time.monotonic()
            while not stop.is_set():
                done = conn.execute("SELECT coalesce(max(last_vote_id), 0) FROM ratings_elostate").fetchone()[0]
                if done >= vid:
                    lags.append(time.monotonic() - t0)
                    break
                if time.monotonic() - t0 > 30:
                    lags.append(float("inf"))
                    break
                time.sleep(0.02)
            time.sleep(0.3)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--annotators", "--clients", default="32,128",
                    help="concurrent annotators; a comma-separated list runs each level in turn (default 32,128)")
    ap.add_argument("--seconds", type=float, default=20, help="measured seconds of voting per level")
    ap.add_argument("--warmup", type=float, default=3)
    ap.add_argument("--workers", type=int, default=None, help="gunicorn workers (default: arenasite/gunicorn.conf.py)")
    ap.add_argument("--threads", type=int, default=None, help="threads per gunicorn worker (gthread)")
    ap.add_argument("--worker-class", default=None, help="gunicorn worker class (gthread, sync, ...)")
    ap.add_argument("--procs", type=int, default=2, help="load-generator processes")
    ap.add_argument("--generators", type=int, default=8)
    # 8 generators x 300 prompts: 13,200 items, room for about 39,600 votes at the study's overlap
    # of 3, so that no level runs out of tasks (a level that does says so).
    ap.add_argument("--prompts", type=int, default=300)
    a = ap.parse_args()
    levels = [int(x) for x in str(a.annotators).split(",") if x.strip()]

    db_url = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/arena_bench")
    try:
        _recreate_db(db_url)
    except Exception as exc:
        print(f"bench_voting: PostgreSQL not reachable at {db_url} ({exc}); skipped")
        return
    broker = os.environ.get("CELERY_BROKER_URL", "")
    media = tempfile.mkdtemp(prefix="bench-media-")
    stats_dir = tempfile.mkdtemp(prefix="bench-stats-")
    if not broker:
        broker = "filesystem://"
    env = _env(db_url, broker, media)
    env["BENCH_STATS_DIR"] = stats_dir
    subprocess.run([PY, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
    seed = subprocess.run([PY, "manage.py", "shell", "-c", SEED.replace("sys.argv[1:4]", f"[{a.generators}, {a.prompts}, {max(levels)}]")],
                          cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    tokens = json.loads(seed.stdout.strip().splitlines()[-1])

    port = _free_port()
    # The project's gunicorn settings (when it has them), plus a hook counting each worker's statements.
    gconf = ROOT / "arenasite" / "gunicorn.conf.py"
    conf = Path(stats_dir) / "gunicorn-bench.conf.py"
    conf.write_text((gconf.read_text() if gconf.exists() else "") + "\n" + (HERE / "gunicorn_stats.py").read_text())
    cmd = [PY, "-m", "gunicorn", "arenasite.wsgi", "-c", str(conf), "-b", f"127.0.0.1:{port}", "--log-level", "warning"]
    if a.workers:
        cmd += ["-w", str(a.workers)]
    if a.threads:
        cmd += ["--threads", str(a.threads)]
    if a.worker_class:
        cmd += ["-k", a.worker_class]
    web = subprocess.Popen(cmd, cwd=ROOT, env={**env, "DATABASE_URL": db_url + "?application_name=bench-web"})
    worker = subprocess.Popen(
        [PY, "-m", "celery", "-A", "arenasite", "worker", "-Q", "default", "-c", "1", "-l", "WARNING",
         "--without-gossip", "--without-mingle", "--without-heartbeat"], cwd=ROOT,
        env={**env, "DATABASE_URL": db_url + "?application_name=bench-celery"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs = [web, worker]
    results = []
    try:
        _wait_port(port)
        time.sleep(2)
        meter = CpuMeter(db_url, {"web": web.pid, "celery": worker.pid})
        for n in levels:
            toks = tokens[:n]
            base = _measured(db_url, stats_dir, meter, lambda: _load(toks, "baseline", a.seconds / 2, a.warmup, a.procs, port))
            stop, lags = threading.Event(), []
            sampler = threading.Thread(target=_elo_lag_sampler, args=(db_url, stop, lags), daemon=True)
            sampler.start()
            vote = _measured(db_url, stats_dir, meter, lambda: _load(toks, "vote", a.seconds, a.warmup, a.procs, port))
            stop.set()
            sampler.join(5)
            results.append((n, base, vote, lags))
        meter.stop.set()
        time.sleep(1)
        import psycopg

        with psycopg.connect(db_url) as conn:
            votes = conn.execute("SELECT count(*) FROM arena_vote").fetchone()[0]
            distinct = conn.execute("SELECT count(DISTINCT assignment_id) FROM arena_vote").fetchone()[0]
            stored = {str(r[0]) for r in conn.execute("SELECT assignment_id FROM arena_vote")}
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()

    server = _server_vote_times(stats_dir)
    created = [x for _, _, v, _ in results for x in v["created"]]
    lost = len(set(created) - stored)
    label = " ".join(x for x in [f"-w {a.workers}" if a.workers else "", f"--threads {a.threads}" if a.threads else "",
                                  f"-k {a.worker_class}" if a.worker_class else ""] if x)
    print(f"voting round trips (POST a vote, get the next task), gunicorn {'with ' + label if label else 'as configured'}"
          f"{' + arenasite/gunicorn.conf.py' if gconf.exists() else ''}, PostgreSQL, {os.cpu_count()} cores, "
          f"{a.seconds:.0f} s per level")
    hdr = f"  {'':30s} {'req/s':>7s} {'p50 ms':>7s} {'p99 ms':>7s} {'stmts':>6s} {'web CPU ms':>10s} {'PG CPU ms':>9s}"
    for n, base, vote, lags in results:
        print(f"\n  {n} concurrent annotators")
        print(hdr)
        for name, r in (("baseline GET /healthz", base), ("round trip (API vote + next)", vote)):
            print(f"  {name:30s} {r['rps']:7.0f} {r['p50']:7.1f} {r['p99']:7.1f} {r['statements']:6.1f}"
                  f" {r['cpu'].get('web', 0):10.2f} {r['cpu'].get('pg-web', 0):9.2f}")
        ratio = vote["rps"] / base["rps"] if base["rps"] else float("nan")
        print(f"  ratio round trips/s / healthz req/s: {ratio:.3f}   (target >= 0.15)"
              f"   p99 / baseline p99: {vote['p99'] / base['p99']:.1f}   (target <= 3)")
        print(f"  Celery worker (Elo, recompute) CPU per round trip: {vote['cpu'].get('celery', 0):.2f} ms,"
              f" its PostgreSQL backends {vote['cpu'].get('pg-celery', 0):.2f} ms;"
              f" responses by status: {dict(sorted(vote['codes'].items()))}; connection errors: {vote['errors']}")
        if vote["no_task"]:
            print(f"  WARNING: {vote['no_task']} responses carried no task (the study ran out for those annotators);"
                  " this level measured fewer votes than its load: raise --prompts")
        finite = sorted(x for x in lags if x != float("inf"))
        if lags and finite:
            p95 = finite[int(len(finite) * 0.95)]
            print(f"  vote -> Elo applied: p50 {statistics.median(finite):.2f} s, p95 {p95:.2f} s over {len(lags)} samples "
                  f"({len(lags) - len(finite)} over 30 s)")
    if server:
        times = sorted(x for p in server for x in p)
        print(f"\n  time in the server per vote (all levels): p50 {times[len(times) // 2] * 1000:.1f} ms,"
              f" p99 {times[int(len(times) * 0.99)] * 1000:.1f} ms; votes per web process: {[len(p) for p in server]}"
              " (the rest of a round trip's latency is waiting for a free thread)")
    print(f"\n  votes in database: {votes}; 201 responses: {len(created)}; distinct assignments voted: {distinct}"
          f"  -> lost {lost}, duplicated {votes - distinct}")
    print("  (stmts: SQL statements per request in the web workers;"
          " CPU: milliseconds per request, web = gunicorn processes, PG = the database backends serving them)")


if __name__ == "__main__":
    main()
