"""Real crowd votes (LLMFAO) against evalica's published results."""

import csv
from pathlib import Path

import numpy as np
import pytest

from ratings.bradley_terry import fit_bt
from ratings.elo import online_elo
from tests.conftest import need

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "llmfao"
SCORE_LEFT = {"left": 1.0, "right": 0.0, "tie": 0.5}


@pytest.fixture(scope="module")
def llmfao():
    need((DATA / "votes.csv").is_file() and (DATA / "expected_scores.csv").is_file(), f"LLMFAO data at {DATA}")
    with open(DATA / "votes.csv", newline="", encoding="utf-8") as fh:
        votes = list(csv.DictReader(fh))
    expected: dict[str, dict[str, float]] = {}
    with open(DATA / "expected_scores.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            expected.setdefault(row["algorithm"], {})[row["item"]] = float(row["score"])
    models = sorted({v["left"] for v in votes} | {v["right"] for v in votes})
    index = {m: i for i, m in enumerate(models)}
    left = np.array([index[v["left"]] for v in votes])
    right = np.array([index[v["right"]] for v in votes])
    score = np.array([SCORE_LEFT[v["winner"]] for v in votes])
    return models, left, right, score, expected


def test_it_reproduces_evalica_bradley_terry_on_llmfao(llmfao):
    models, left, right, score, expected = llmfao
    ratings = fit_bt(
        len(models), left, right, (score == 1.0) * 1.0, (score == 0.0) * 1.0, (score == 0.5) * 1.0
    )
    strengths = 10.0 ** ((ratings - ratings.max()) / 400.0)
    strengths /= strengths.sum()
    want = np.array([expected["bradley_terry"][m] for m in models])
    assert set(expected["bradley_terry"]) == set(models)
    np.testing.assert_allclose(strengths, want, rtol=1e-6, atol=0)


def test_it_reproduces_evalica_online_elo_on_llmfao(llmfao):
    models, left, right, score, expected = llmfao
    ratings = online_elo(left, right, score, len(models), k=4.0, init_rating=1000.0)
    want = np.array([expected["elo"][m] for m in models])
    assert set(expected["elo"]) == set(models)
    np.testing.assert_allclose(ratings, want, rtol=1e-6, atol=0)


def test_the_llmfao_bradley_terry_order_matches_evalica(llmfao):
    models, left, right, score, expected = llmfao
    ratings = fit_bt(
        len(models), left, right, (score == 1.0) * 1.0, (score == 0.0) * 1.0, (score == 0.5) * 1.0
    )
    ours = [models[i] for i in np.argsort(-ratings, kind="stable")]
    theirs = sorted(expected["bradley_terry"], key=lambda m: -expected["bradley_terry"][m])
    assert ours[:10] == theirs[:10]
