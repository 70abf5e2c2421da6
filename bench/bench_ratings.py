"""Benchmark of the rating engine and of ``manage.py rate_battles``: ``python bench/bench_ratings.py``.

Whole process first: ``rate_battles FILE --json --bootstrap 1000`` on a FastChat-format log of
1,000,000 battles among 50 models (with FastChat's extra columns), timed from process start
to exit, next to FastChat's ``compute_bt`` + ``compute_bootstrap_bt`` approach
(``bench/fastchat_bt.py``: pandas read, (pair, outcome) counts, L-BFGS-B logistic fit,
multinomial count bootstrap) and next to the command as it was before columnar reading (the
revision ``--old-rev``, extracted with ``git archive``). Each is run ``--process-repeat``
times; the fastest wall-clock run is reported with its CPU seconds, which other work on a
shared machine hardly changes.

Then in process: Bradley-Terry fit plus a 1,000-round bootstrap on 1,000,000 synthetic
pairwise votes among 50 generators, against FastChat's older one-hot logistic regression
(scikit-learn on per-pair rows with sample weights, bootstrapped by refitting), and the
throughput of online Elo.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OLD_REV = "25b2f3be0189bfac350f9a80515e3b2c16cbac8e"
"""The last revision whose ``rate_battles`` read battle logs row by row in Python."""
WINNER_NAMES = np.array(["model_a", "model_b", "tie", "tie (bothbad)"])

from ratings.bradley_terry import aggregate_pairs, bootstrap_bt, fit_bt  # noqa: E402
from ratings.elo import online_elo  # noqa: E402


def synthetic_votes(n: int, votes: int, *, tie_rate: float, seed: int) -> tuple[np.ndarray, ...]:
    """Votes under a BT model with normal(0, 150) Elo ratings; a tie with probability ``tie_rate``."""
    rng = np.random.default_rng(seed)
    true = rng.normal(0.0, 150.0, n)
    a = rng.integers(0, n, votes)
    b = (a + rng.integers(1, n, votes)) % n
    tie = rng.random(votes) < tie_rate
    a_wins = ~tie & (rng.random(votes) < 1.0 / (1.0 + 10.0 ** ((true[b] - true[a]) / 400.0)))
    b_wins = ~tie & ~a_wins
    return a, b, a_wins.astype(np.float64), b_wins.astype(np.float64), tie.astype(np.float64)


def sklearn_bt(n: int, i: np.ndarray, j: np.ndarray, w_ij: np.ndarray, w_ji: np.ndarray, t: np.ndarray) -> np.ndarray:
    """FastChat-style fit: one-hot +-log(10) design, one row per pair and outcome, sample weights."""
    rows = i.size
    x = np.zeros((rows, n))
    x[np.arange(rows), i] = math.log(10.0)
    x[np.arange(rows), j] = -math.log(10.0)
    design = np.vstack([x, x])
    labels = np.concatenate([np.ones(rows), np.zeros(rows)])
    weights = np.concatenate([w_ij + 0.5 * t, w_ji + 0.5 * t])
    model = LogisticRegression(fit_intercept=False, C=1e8, tol=1e-8, max_iter=10_000)
    model.fit(design, labels, sample_weight=weights)
    ratings = 400.0 * model.coef_[0]
    return ratings - ratings.mean() + 1000.0


def write_fastchat_log(path: Path, n: int, battles: int, *, seed: int) -> None:
    """A battle log in FastChat's ``clean_battle`` shape: model_a, model_b, winner plus judge,
    turn, anony, language and tstamp columns; 20% ties, a third of them "tie (bothbad)"."""
    a, b, wa, _, t = synthetic_votes(n, battles, tie_rate=0.2, seed=seed)
    rng = np.random.default_rng(seed + 1)
    outcome = np.where(t > 0, np.where(rng.random(battles) < 1 / 3, 3, 2), np.where(wa > 0, 0, 1))
    names = np.array([f"model-{i:02d}" for i in range(n)])
    judges = np.array([f"arena_user_{i}" for i in range(997)])
    languages = np.array(["English", "Chinese", "German", "Spanish"])
    table = pa.table(
        {
            "model_a": names[a],
            "model_b": names[b],
            "winner": WINNER_NAMES[outcome],
            "judge": judges[rng.integers(0, judges.size, battles)],
            "turn": rng.integers(1, 4, battles),
            "anony": rng.random(battles) < 0.8,
            "language": languages[rng.integers(0, languages.size, battles)],
            "tstamp": 1.7e9 + np.cumsum(rng.exponential(3.0, battles)),
        }
    )
    if path.suffix == ".parquet":
        pq.write_table(table, path)
    elif path.suffix == ".csv":
        pa_csv.write_csv(table, path)
    elif path.suffix == ".json":
        with path.open("w", encoding="utf-8") as handle:
            json.dump(table.to_pylist(), handle, indent=2)  # as FastChat's clean_battle_data.py writes
    else:
        with path.open("w", encoding="utf-8") as handle:
            for record in table.to_pylist():
                handle.write(json.dumps(record) + "\n")


def timed_run(command: list[str], cwd: Path, repeat: int) -> tuple[float, float, str]:
    """Fastest wall-clock seconds of ``repeat`` runs of ``command``, the CPU seconds (user +
    system) of that run, and its stdout. The fastest run is the one least slowed by other work
    on the machine; CPU seconds hardly depend on it."""
    best: tuple[float, float, str] | None = None
    env = {"DEBUG": "1", **os.environ}  # the command before the change loaded the settings
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr}")
        if best is None or wall < best[0]:
            best = (wall, cpu, result.stdout)
    assert best is not None
    return best


def whole_process(args: argparse.Namespace) -> None:
    n, battles, rounds, repeat = args.generators, args.battles, args.rounds, max(args.process_repeat, 1)
    python = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / f"battles.{args.format}"
        write_fastchat_log(log, n, battles, seed=0)
        size = log.stat().st_size / 1e6
        print(f"whole process: {battles:,} FastChat-format battles among {n} models, {args.format} ({size:,.0f} MB),")
        print(f"  {rounds} bootstrap rounds; fastest of {repeat} runs each (and its CPU seconds)")
        if hasattr(os, "getloadavg"):
            print(f"  load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        command = ["rate_battles", str(log), "--json", "--bootstrap", str(rounds)]
        ours, ours_cpu, out = timed_run([python, "manage.py", *command], ROOT, repeat)
        rows = {r["model"]: r for r in json.loads(out)}
        _report("rate_battles (this tree)", ours, ours_cpu)

        fastchat, fastchat_cpu, out = timed_run(
            [python, str(ROOT / "bench" / "fastchat_bt.py"), str(log), "--rounds", str(rounds)]
            + ["--cpus", str(args.fastchat_cpus)],
            ROOT,
            repeat,
        )
        theirs = json.loads(out)
        gap = max(abs(r["bt"] - rows[r["model"]]["bt"]) for r in theirs)
        cpus = f"{args.fastchat_cpus} CPU" + ("s" if args.fastchat_cpus > 1 else "")
        _report(f"FastChat compute_bt + compute_bootstrap_bt, {cpus}", fastchat, fastchat_cpu)

        old = old_cpu = None
        old_tree = Path(tmp) / "old"
        try:
            archive = subprocess.run(
                ["git", "archive", "--format=tar", args.old_rev], cwd=ROOT, capture_output=True, check=True
            )
            old_tree.mkdir()
            tar_path = Path(tmp) / "old.tar"
            tar_path.write_bytes(archive.stdout)
            with tarfile.open(tar_path) as tar:
                tar.extractall(old_tree, filter="data")
        except (OSError, subprocess.CalledProcessError) as exc:
            print(f"  rate_battles at {args.old_rev[:10]}: not measured ({exc})")
        else:
            old, old_cpu, out = timed_run([python, "manage.py", *command], old_tree, repeat)
            before = {r["model"]: r for r in json.loads(out)}
            change = max(
                abs(before[m][key] - rows[m][key])
                for m in rows
                for key in ("bt", "bt_ci_low", "bt_ci_high", "elo", "n")
            )
            _report(f"rate_battles at {args.old_rev[:10]} (row-by-row reading)", old, old_cpu)
    _ratio("speed-up over FastChat's approach", fastchat / ours, fastchat_cpu / ours_cpu)
    if old is not None and old_cpu is not None:
        _ratio("speed-up over the command before", old / ours, old_cpu / ours_cpu)
        print(f"  {'max change in any output against it:':<{_WIDTH}}{change:7.1e}")
    print(f"  {'max |ours - FastChat| BT point estimate:':<{_WIDTH}}{gap:7.1e} Elo (FastChat's L-BFGS gtol 1e-6)")


_WIDTH = 56


def _report(label: str, wall: float, cpu: float) -> None:
    print(f"  {label + ':':<{_WIDTH}}{wall:7.2f} s  (CPU {cpu:6.2f} s)")


def _ratio(label: str, wall: float, cpu: float) -> None:
    print(f"  {label + ':':<{_WIDTH}}{wall:7.1f}x   (CPU {cpu:.1f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--battles", type=int, default=1_000_000, help="battles in the whole-process log")
    parser.add_argument(
        "--format", choices=["csv", "jsonl", "json", "parquet"], default="csv", help="format of that log"
    )
    parser.add_argument("--process-repeat", type=int, default=3, help="runs of each whole process")
    parser.add_argument("--fastchat-cpus", type=int, default=1, help="FastChat's bootstrap processes")
    parser.add_argument("--old-rev", default=OLD_REV, help="revision of the command to compare with")
    parser.add_argument("--skip-process", action="store_true", help="only the in-process benchmark")
    parser.add_argument("--votes", type=int, default=1_000_000)
    parser.add_argument("--generators", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--sklearn-rounds", type=int, default=30, help="refits timed for the sklearn bootstrap")
    parser.add_argument("--repeat", type=int, default=3, help="runs of ours; the fastest is reported")
    parser.add_argument("--elo-votes", type=int, default=1_000_000)
    args = parser.parse_args()
    n, votes, rounds = args.generators, args.votes, args.rounds

    print(f"machine: {os.cpu_count()} CPUs, numpy {np.__version__}")
    if not args.skip_process:
        whole_process(args)
        print()
    a, b, wa, wb, t = synthetic_votes(n, votes, tie_rate=0.2, seed=0)
    print(f"data: {votes:,} votes among {n} generators, {t.mean():.0%} ties")

    best: list[float] = []
    for _ in range(max(args.repeat, 1)):
        start = time.perf_counter()
        i, j, w_ij, w_ji, ties = aggregate_pairs(n, a, b, wa, wb, t)
        aggregated = time.perf_counter()
        ours = fit_bt(n, i, j, w_ij, w_ji, ties)
        fitted = time.perf_counter()
        samples = bootstrap_bt(n, i, j, w_ij, w_ji, ties, rounds=rounds, seed=0)
        done = time.perf_counter()
        run = [aggregated - start, fitted - aggregated, done - fitted, done - start]
        if not best or run[3] < best[3]:
            best = run
    ours_total = best[3]
    print()
    print(f"ours (batched Newton, multinomial bootstrap; fastest of {max(args.repeat, 1)} runs)")
    print(f"  aggregate votes to {i.size} pair rows: {best[0]:8.3f} s")
    print(f"  BT fit:                            {best[1]:8.3f} s")
    print(f"  bootstrap, {rounds} rounds:            {best[2]:8.3f} s")
    print(f"  total:                             {ours_total:8.3f} s")
    width = np.percentile(samples, 97.5, axis=0) - np.percentile(samples, 2.5, axis=0)
    print(f"  median 95% interval width:         {np.median(width):8.1f} Elo")

    cells = np.concatenate([w_ij, w_ji, ties])
    total = int(cells.sum())
    rng = np.random.default_rng(0)
    m = i.size
    timed = max(1, min(args.sklearn_rounds, rounds))
    times = []
    with threadpool_limits(limits=1):
        start = time.perf_counter()
        theirs = sklearn_bt(n, i, j, w_ij, w_ji, ties)
        sk_fit = time.perf_counter() - start
        for _ in range(timed):
            started = time.perf_counter()
            draw = rng.multinomial(total, cells / total).astype(np.float64)
            sklearn_bt(n, i, j, draw[:m], draw[m : 2 * m], draw[2 * m :])
            times.append(time.perf_counter() - started)
    per_round = float(np.median(times))
    sk_total = sk_fit + per_round * rounds
    print()
    print("scikit-learn LogisticRegression (one-hot design, per-pair weights, refit per round;")
    print("  BLAS limited to 1 thread, its fastest setting here)")
    print(f"  BT fit:                            {sk_fit:8.3f} s")
    note = f"  (median of {timed} timed draw+refit rounds x {rounds})"
    print(f"  bootstrap, {rounds} rounds:            {per_round * rounds:8.3f} s{note}")
    print(f"  total:                             {sk_total:8.3f} s")
    print()
    print(f"speed-up (sklearn total / ours total): {sk_total / ours_total:8.1f}x")
    print(f"max |ours - sklearn| point estimate:   {np.max(np.abs(ours - theirs)):8.1e} Elo")

    ea, eb, ewa, _, et = synthetic_votes(n, args.elo_votes, tie_rate=0.2, seed=1)
    score = np.where(et > 0, 0.5, ewa)
    start = time.perf_counter()
    online_elo(ea, eb, score, n)
    elapsed = time.perf_counter() - start
    print()
    print(f"online Elo: {args.elo_votes:,} votes in {elapsed:.3f} s = {args.elo_votes / elapsed:,.0f} votes/s")


if __name__ == "__main__":
    main()
