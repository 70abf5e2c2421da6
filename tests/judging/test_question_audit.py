"""The question audit's arithmetic on hand-made items (no database)."""

import pytest
from statsmodels.stats.proportion import proportion_confint

from judging.question_audit import Item, majority, question_audit


def test_people_answer_by_majority_and_a_tie_has_no_answer():
    assert majority(2, 1) is True
    assert majority(1, 2) is False
    assert majority(3, 3) is None
    assert majority(0, 0) is None


# Six questions people decided, one tie. People: yes yes no no yes no (the tie: 1-1).
ITEMS = [
    Item(1, 0, "gen-a", "animals", yes=3, no=0),  # people yes
    Item(1, 1, "gen-a", "animals", yes=2, no=1),  # people yes
    Item(2, 0, "gen-a", "objects", yes=0, no=2),  # people no
    Item(3, 0, "gen-b", "objects", yes=1, no=2),  # people no
    Item(3, 1, "gen-b", "objects", yes=2, no=0),  # people yes
    Item(4, 0, "gen-b", "animals", yes=0, no=1),  # people no
    Item(4, 1, "gen-b", "animals", yes=1, no=1),  # tie: left out
]
# The model: yes, no (missed), yes (hallucinated), no, yes, yes (hallucinated); says yes on the tie.
MODEL = {(1, 0): True, (1, 1): False, (2, 0): True, (3, 0): False, (3, 1): True, (4, 0): True, (4, 1): True}


def test_accuracy_hallucinations_and_misses_overall():
    audit = question_audit(ITEMS, [("model", MODEL)])
    assert (audit["items"], audit["tied"], audit["answers"]) == (6, 1, 16)
    o = audit["sources"][0]["overall"]
    assert o["n"] == 6 and o["correct"] == 3 and o["accuracy"] == pytest.approx(0.5)
    assert (o["people_yes"], o["people_no"]) == (3, 3)
    assert o["hallucinated"] == 2 and o["hallucination_rate"]["rate"] == pytest.approx(2 / 3)
    assert o["missed"] == 1 and o["missed_rate"]["rate"] == pytest.approx(1 / 3)
    low, high = proportion_confint(3, 6, alpha=0.05, method="wilson")
    assert (o["low"], o["high"]) == (pytest.approx(low), pytest.approx(high))
    low, high = proportion_confint(2, 3, alpha=0.05, method="wilson")
    assert (o["hallucination_rate"]["low"], o["hallucination_rate"]["high"]) == (pytest.approx(low), pytest.approx(high))
    assert o["few"] is True  # six questions say little


def test_figures_per_generator_and_per_category():
    src = question_audit(ITEMS, [("model", MODEL)])["sources"][0]
    gens = {g["name"]: g for g in src["generators"]}
    # gen-a: yes/yes, yes/no (missed), no/yes (hallucinated) -> 1 of 3 right.
    assert (gens["gen-a"]["n"], gens["gen-a"]["correct"], gens["gen-a"]["hallucinated"], gens["gen-a"]["missed"]) == (3, 1, 1, 1)
    # gen-b: no/no, yes/yes, no/yes (hallucinated); the tie is not counted.
    assert (gens["gen-b"]["n"], gens["gen-b"]["correct"], gens["gen-b"]["hallucinated"], gens["gen-b"]["missed"]) == (3, 2, 1, 0)
    cats = {c["name"]: c for c in src["categories"]}
    assert (cats["animals"]["n"], cats["animals"]["correct"], cats["animals"]["hallucinated"], cats["animals"]["missed"]) == (3, 1, 1, 1)
    assert (cats["objects"]["n"], cats["objects"]["correct"], cats["objects"]["hallucinated"], cats["objects"]["missed"]) == (3, 2, 1, 0)
    assert [g["name"] for g in src["generators"]] == ["gen-a", "gen-b"]


def test_each_source_is_scored_on_the_questions_it_answered():
    judge = {(1, 0): True, (3, 1): False}  # right once, one miss
    audit = question_audit(ITEMS, [("model", MODEL), ("judge", judge), ("silent", {})])
    by = {s["name"]: s["overall"] for s in audit["sources"]}
    assert [s["name"] for s in audit["sources"]] == ["model", "judge", "silent"]
    assert (by["judge"]["n"], by["judge"]["correct"], by["judge"]["missed"], by["judge"]["hallucinated"]) == (2, 1, 1, 0)
    assert by["judge"]["hallucination_rate"]["rate"] is None  # people said no to none of its questions
    assert by["silent"]["n"] == 0 and by["silent"]["accuracy"] is None and by["silent"]["low"] is None


def test_a_perfect_source_on_many_questions_is_not_marked_few():
    items = [Item(i, 0, "g", "", yes=2, no=0) for i in range(20)] + [Item(100 + i, 0, "g", "", yes=0, no=2) for i in range(20)]
    answers = {(i, 0): True for i in range(20)} | {(100 + i, 0): False for i in range(20)}
    o = question_audit(items, [("m", answers)])["sources"][0]["overall"]
    assert (o["accuracy"], o["hallucinated"], o["missed"], o["few"]) == (1.0, 0, 0, False)
    low, high = proportion_confint(40, 40, alpha=0.05, method="wilson")
    assert o["low"] == pytest.approx(low) and o["high"] == pytest.approx(high)
