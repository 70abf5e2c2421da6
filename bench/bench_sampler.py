"""Votes the pair samplers need to rank 20 simulated generators, and the time of one pick.

Simulation: 20 generators with true Elo ratings evenly spread over ``--span`` points (index
order shuffled). Each vote goes through ``ratings.sampling.pick_pair``; the server puts either
generator on the left at random; an annotator drawn from a pool of 40 answers with their own
temperature (a flatter win probability, median 1.2), their own left-side bias (about +20 Elo
for the left image) and a tie now and then (up to 10 % for close pairs). Every ``--refresh``
votes, or every 1 % of the votes so far once that is more, the ratings are refitted with
``ratings.bradley_terry.fit_bt`` and the sampler state (counts, ratings, standard errors)
replaced by the one of that fit, as the live system stores it after its debounced recompute;
the criterion is checked at the same moments.

Criteria, each in its own runs, counted from the check where it starts to hold for good
(it still holds ``max(1000, onset / 2)`` votes later, where the run stops):

- Kendall tau between fitted and true ratings >= 0.9;
- every adjacent pair of the true ranking settled: the 95 % Fisher interval of the fitted
  difference lies above 0 in the true direction.

A run that does not get there within ``--max-votes`` is censored and counted as the cap. A seed fixes
the ratings, the annotators and their random numbers, so both samplers face the same arena.

Usage: ``python bench/bench_sampler.py [--seeds 20] [--tau-seeds 60] [--quick] [--workers 2]``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ratings.sampling import SAMPLERS, SamplerState, bt_covariance, bt_standard_errors, pick_pair  # noqa: E402
from ratings.bradley_terry import fit_bt  # noqa: E402

N_GEN = 20
N_ANNOTATORS = 40
TAU_TARGET = 0.9
Z95 = 1.959964
TARGET_FEWER = 40


@dataclass
class Result:
    criterion: str
    kind: str
    seed: int
    votes: int | None  # None: not reached within the cap


def kendall_tau(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall tau-a between two score vectors without ties."""
    i, j = np.triu_indices(x.size, 1)
    return float(np.mean(np.sign(x[i] - x[j]) * np.sign(y[i] - y[j])))


def simulate(criterion: str, kind: str, seed: int, *, span: float, refresh: int, max_votes: int) -> Result:
    """Votes until ``criterion`` ("tau" or "settled") holds for good, for one sampler and seed.

    The seed fixes the true ratings, the annotators and their answers' random numbers, so
    both samplers face the same arena.
    """
    world = np.random.default_rng(seed)
    true = world.permutation(np.linspace(1000 - span / 2, 1000 + span / 2, N_GEN))
    temperature = np.exp(world.normal(math.log(1.2), 0.25, N_ANNOTATORS))
    left_bias = world.normal(20.0, 20.0, N_ANNOTATORS)
    order = np.argsort(true)
    lo, hi = order[:-1], order[1:]

    picker = np.random.default_rng([seed, SAMPLERS.index(kind), 1])
    voters = np.random.default_rng([seed, 2])
    rand = voters.random((max_votes, 3))
    who = voters.integers(N_ANNOTATORS, size=max_votes)

    wins = np.zeros((N_GEN, N_GEN))
    ties = np.zeros((N_GEN, N_GEN))
    counts = np.zeros((N_GEN, N_GEN))
    state = SamplerState(n=N_GEN, counts=np.zeros((N_GEN, N_GEN)))
    iu, ju = np.triu_indices(N_GEN, 1)
    onset = None
    next_fit = refresh
    for votes in range(1, max_votes + 1):
        a, b = pick_pair(kind, state, picker)
        u_side, u_tie, u_win = rand[votes - 1]
        left, right = (a, b) if u_side < 0.5 else (b, a)
        k = who[votes - 1]
        diff = true[left] - true[right] + left_bias[k]
        counts[a, b] += 1
        counts[b, a] += 1
        if u_tie < 0.10 * math.exp(-((diff / 75.0) ** 2)):
            ties[a, b] += 1
            ties[b, a] += 1
        elif u_win < 1.0 / (1.0 + 10.0 ** (-diff / (400.0 * temperature[k]))):
            wins[left, right] += 1
        else:
            wins[right, left] += 1

        if votes < next_fit:
            continue
        # Refit every `refresh` votes, or every 1 % of the votes so far once that is more.
        next_fit += max(refresh, votes // 100 // refresh * refresh)
        fit = fit_bt(N_GEN, iu, ju, wins[iu, ju], wins[ju, iu], ties[iu, ju])
        cov = bt_covariance(N_GEN, counts, fit)
        # As the live system: the state (counts included) is the one stored with the latest fit.
        state = SamplerState(N_GEN, counts.copy(), fit, np.sqrt(np.maximum(np.diag(cov), 0.0)))

        if not np.isfinite(fit).all():
            ok = False
        elif criterion == "tau":
            ok = kendall_tau(fit, true) >= TAU_TARGET
        else:
            var = cov[lo, lo] + cov[hi, hi] - 2 * cov[lo, hi]
            ok = bool(np.all(fit[hi] - fit[lo] > Z95 * np.sqrt(np.maximum(var, 0.0))))
        onset = (onset or votes) if ok else None
        if onset and votes - onset >= max(1000, onset // 2):
            return Result(criterion, kind, seed, onset)
    return Result(criterion, kind, seed, None)


def _run(job: tuple) -> Result:
    criterion, kind, seed, span, refresh, max_votes = job
    return simulate(criterion, kind, seed, span=span, refresh=refresh, max_votes=max_votes)


def pick_times(n: int, kind: str, picks: int = 5000) -> tuple[float, float]:
    """p50 and p99 of one ``pick_pair`` call in ms, on a state like a running arena's."""
    rng = np.random.default_rng(n)
    true = rng.normal(1000.0, 100.0, n)
    i, j = np.triu_indices(n, 1)
    p = 1.0 / (1.0 + 10.0 ** ((true[j] - true[i]) / 400.0))
    c = rng.integers(20, 200, size=i.size)
    wins_a = rng.binomial(c, p)
    fit = fit_bt(n, i, j, wins_a, c - wins_a, np.zeros(i.size))
    counts = np.zeros((n, n))
    counts[i, j] = c
    counts += counts.T
    state = SamplerState(n=n, counts=counts, ratings=fit, stderr=bt_standard_errors(n, counts, fit))
    eligible = rng.random((n, n)) < 0.8
    times = np.empty(picks)
    for t in range(picks):
        start = time.perf_counter()
        pick_pair(kind, state, rng, eligible=eligible)
        times[t] = time.perf_counter() - start
    return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 99) * 1e3)


def _row(label: str, kind: str, votes: np.ndarray, censored: int) -> str:
    sd = votes.std(ddof=1) if votes.size > 1 else 0.0
    return f"{label:<32}{kind:<9}{votes.mean():9.0f} ± {sd:6.0f}  {np.median(votes):9.0f}  {censored:8d}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20, help="seeds for the settled criterion")
    parser.add_argument("--tau-seeds", type=int, default=60, help="seeds for the Kendall criterion")
    parser.add_argument("--quick", action="store_true", help="5 and 20 seeds, for a smoke run")
    parser.add_argument("--span", type=float, default=400.0, help="Elo span of the true ratings")
    parser.add_argument("--refresh", type=int, default=100, help="votes between refits")
    parser.add_argument("--max-votes", type=int, default=400_000)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args()
    seeds = {"settled": 5 if args.quick else args.seeds, "tau": 20 if args.quick else args.tau_seeds}

    started = time.perf_counter()
    jobs = [
        (criterion, kind, seed, args.span, args.refresh, args.max_votes)
        for criterion in ("settled", "tau")
        for seed in range(seeds[criterion])
        for kind in SAMPLERS
    ]
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(_run, jobs))
    elapsed = time.perf_counter() - started

    print(
        f"{N_GEN} generators evenly over {args.span:.0f} Elo, {N_ANNOTATORS} noisy annotators, "
        f"refit every {args.refresh} votes (or 1 % of the votes), cap {args.max_votes} votes, "
        f"{elapsed:.0f} s"
    )
    print(f"{'votes until (seeds)':<32}{'sampler':<9}{'mean ± sd':>18}  {'median':>9}  censored")
    labels = {"tau": "Kendall tau >= 0.9", "settled": "adjacent pairs settled 95%"}
    for criterion in ("tau", "settled"):
        label = f"{labels[criterion]} ({seeds[criterion]})"
        votes = {}
        for kind in SAMPLERS:
            rows = [r for r in results if r.criterion == criterion and r.kind == kind]
            votes[kind] = np.array([r.votes or args.max_votes for r in rows], dtype=float)
            print(_row(label, kind, votes[kind], sum(r.votes is None for r in rows)))
        uni, act = votes["uniform"], votes["active"]
        ratio = act / uni
        fewer = 100 * (1 - act.mean() / uni.mean())
        verdict = "met" if fewer >= TARGET_FEWER else "not met"
        medians = 100 * (1 - np.median(act) / np.median(uni))
        pad = " " * 32
        print(
            f"{pad}active needs {fewer:.0f} % fewer votes than uniform "
            f"(means; target {TARGET_FEWER} % {verdict}),\n"
            f"{pad}{medians:.0f} % (medians); per seed {100 * (1 - np.median(ratio)):.0f} % (median), "
            f"active better on {np.mean(ratio < 1) * 100:.0f} % of seeds"
        )

    print(f"{'pick time (ms)':<20}{'p50':>8}{'p99':>8}")
    for n in (20, 50):
        for kind in SAMPLERS:
            p50, p99 = pick_times(n, kind)
            print(f"n={n:<3} {kind:<14}{p50:8.3f}{p99:8.3f}")


if __name__ == "__main__":
    main()
