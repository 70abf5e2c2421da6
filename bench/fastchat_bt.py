"""FastChat's Bradley-Terry leaderboard, as a baseline for ``bench_ratings.py``.

``python bench/fastchat_bt.py FILE [--rounds N] [--cpus C]`` prints a JSON list of
``{model, bt, bt_ci_low, bt_ci_high}``. The functions below follow FastChat's
``fastchat/serve/monitor/rating_systems.py`` (``compute_bt`` and ``compute_bootstrap_bt``):
pandas reads the log, ``np.unique`` turns battles into (pair, outcome) counts, each fit is
L-BFGS-B on the logistic loss of those counts (scipy ``minimize``), and the bootstrap draws
the counts from a multinomial and refits, in a process pool of ``--cpus`` workers (FastChat
uses every CPU; with one, rounds run in this process). The one change: no tqdm progress bar.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import expit


def get_matchups_models(df):
    n_rows = len(df)
    model_indices, models = pd.factorize(pd.concat([df["model_a"], df["model_b"]]))
    matchups = np.column_stack([model_indices[:n_rows], model_indices[n_rows:]])
    return matchups, models.to_list()


def preprocess_for_bt(df):
    n_rows = len(df)
    schedule = np.full((n_rows, 3), fill_value=1, dtype=np.int32)
    schedule[:, [0, 1]], models = get_matchups_models(df)
    schedule[df["winner"] == "model_a", 2] = 2
    schedule[df["winner"] == "model_b", 2] = 0
    matchups_outcomes, weights = np.unique(schedule, return_counts=True, axis=0)
    matchups = matchups_outcomes[:, [0, 1]]
    outcomes = matchups_outcomes[:, 2].astype(np.float64) / 2.0
    weights = weights.astype(np.float64)
    return matchups, outcomes, models, weights


def bt_loss_and_grad(ratings, matchups, outcomes, weights, alpha=1.0):
    matchup_ratings = ratings[matchups]
    logits = alpha * (matchup_ratings[:, 0] - matchup_ratings[:, 1])
    probs = expit(logits)
    loss = -((np.log(probs) * outcomes + np.log(1.0 - probs) * (1.0 - outcomes)) * weights).sum()
    matchups_grads = -alpha * (outcomes - probs) * weights
    model_grad = np.zeros_like(ratings)
    np.add.at(model_grad, matchups[:, [0, 1]], matchups_grads[:, None] * np.array([1.0, -1.0], dtype=np.float64))
    return loss, model_grad


def fit_bt(matchups, outcomes, weights, n_models, alpha, tol=1e-6):
    initial_ratings = np.zeros(n_models, dtype=np.float64)
    result = minimize(
        fun=bt_loss_and_grad,
        x0=initial_ratings,
        args=(matchups, outcomes, weights, alpha),
        jac=True,
        method="L-BFGS-B",
        options={"disp": False, "maxiter": 100, "gtol": tol},
    )
    return result["x"]


def scale_and_offset(
    ratings, models, scale=400, init_rating=1000, baseline_model="mixtral-8x7b-instruct-v0.1", baseline_rating=1114
):
    scaled_ratings = (ratings * scale) + init_rating
    if baseline_model in models:
        baseline_idx = models.index(baseline_model)
        scaled_ratings += baseline_rating - scaled_ratings[..., [baseline_idx]]
    return scaled_ratings


def compute_bt(df, base=10.0, scale=400.0, init_rating=1000, tol=1e-6):
    matchups, outcomes, models, weights = preprocess_for_bt(df)
    ratings = fit_bt(matchups, outcomes, weights, len(models), math.log(base), tol)
    scaled_ratings = scale_and_offset(ratings, models, scale, init_rating=init_rating)
    return pd.Series(scaled_ratings, index=models).sort_values(ascending=False)


def compute_bootstrap_bt(battles, num_round, base=10.0, scale=400.0, init_rating=1000.0, tol=1e-6, num_cpu=None):
    matchups, outcomes, models, weights = preprocess_for_bt(battles)
    rng = np.random.default_rng(seed=0)
    idxs = rng.multinomial(n=len(battles), pvals=weights / weights.sum(), size=(num_round))
    boot_weights = idxs.astype(np.float64) / len(battles)
    bt_fn = partial(fit_bt, matchups, outcomes, n_models=len(models), alpha=np.log(base), tol=tol)
    if num_cpu == 1:
        results = [bt_fn(w) for w in boot_weights]
    else:
        with mp.Pool(num_cpu) as pool:
            results = list(pool.imap_unordered(bt_fn, boot_weights))
    ratings = np.array(results)
    scaled_ratings = scale_and_offset(ratings, models, scale, init_rating)
    df = pd.DataFrame(scaled_ratings, columns=models)
    return df[df.median().sort_values(ascending=False).index]


def read_log(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return pd.read_csv(path)
    if suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_json(path, lines=suffix == ".jsonl")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--cpus", type=int, default=1)
    args = parser.parse_args()
    battles = read_log(args.file)
    bt = compute_bt(battles)
    samples = compute_bootstrap_bt(battles, args.rounds, num_cpu=args.cpus)
    low, high = samples.quantile(0.025), samples.quantile(0.975)
    rows = [
        {"model": model, "bt": float(bt[model]), "bt_ci_low": float(low[model]), "bt_ci_high": float(high[model])}
        for model in bt.index
    ]
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
