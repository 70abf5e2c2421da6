"""Arena's hand-over hooks and the per-process cache."""

import threading
import time

import pytest

from arena import hooks
from arena.ttl_cache import TTLCache, caches_clear


def test_a_cache_entry_expires_after_its_time(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    cache = TTLCache(ttl=2.0)
    cache.set("k", 1)
    now[0] += 1.9
    assert cache.get("k") == 1
    now[0] += 0.2
    assert cache.get("k") is None


def test_a_full_cache_drops_the_oldest_entry_first():
    cache = TTLCache(ttl=60, maxsize=3)
    for k in "abcd":
        cache.set(k, k.upper())
    assert [cache.get(k) for k in "abcd"] == [None, "B", "C", "D"]
    assert len(cache) == 3


def test_get_or_set_makes_a_value_once_while_it_is_fresh():
    cache = TTLCache(ttl=60)
    made = []
    for _ in range(3):
        assert cache.get_or_set("k", lambda: made.append(1) or "v") == "v"
    assert made == [1]


class SlowMaker:
    """A value maker that says when it has started and finishes when released; `calls` counts its calls."""

    def __init__(self, value):
        self.value, self.calls = value, []
        self.started, self.release = threading.Event(), threading.Event()

    def __call__(self):
        self.calls.append(1)
        self.started.set()
        self.release.wait(5)
        return self.value


def test_one_thread_remakes_an_expired_value_while_the_others_keep_the_old_one(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    cache = TTLCache(ttl=10)
    assert cache.get_or_make("index", lambda: "first") == "first"
    now[0] += 11  # expired
    slow, got = SlowMaker("second"), []
    maker = threading.Thread(target=lambda: got.append(cache.get_or_make("index", slow)))
    maker.start()
    assert slow.started.wait(5)
    # While it is being remade, every other caller gets the previous value at once, none remakes it.
    assert [cache.get_or_make("index", lambda: "never") for _ in range(5)] == ["first"] * 5
    slow.release.set()
    maker.join(5)
    assert slow.calls == [1] and got == ["second"] and cache.get_or_make("index", lambda: "never") == "second"


def test_callers_wait_for_the_one_making_a_value_that_was_never_there():
    cache = TTLCache(ttl=60)
    slow, got = SlowMaker("made"), []
    first = threading.Thread(target=lambda: got.append(cache.get_or_make("k", slow)))
    first.start()
    assert slow.started.wait(5)
    others = [threading.Thread(target=lambda: got.append(cache.get_or_make("k", slow))) for _ in range(3)]
    for t in others:
        t.start()
    slow.release.set()
    for t in [first, *others]:
        t.join(5)
    assert got == ["made"] * 4 and slow.calls == [1]


def test_one_call_empties_every_cache():
    a, b = TTLCache(ttl=60), TTLCache(ttl=60)
    a.set(1, 1)
    b.set(2, 2)
    caches_clear()
    assert a.get(1) is None and b.get(2) is None


def test_an_unknown_hook_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown hook 'vote_comitted'"):
        hooks.register("vote_comitted", lambda **kw: None)
    with pytest.raises(ValueError, match="unknown hook"):
        hooks.call("nothing_like_it")


def test_every_hook_arena_calls_is_registered_by_the_app_that_owns_the_work():
    from ratings import selectors as ratings_selectors
    from ratings import services as ratings_services
    from judging import board, screening, services as judging_services

    assert hooks._registry == {
        "vote_committed": ratings_services.ratings_vote_committed,
        "votes_recounted": ratings_services.votes_recounted,
        "pair_pick": ratings_selectors.pair_pick,
        "outputs_imported": judging_services.scoring_enqueue_outputs,
        "outputs_withheld": screening.outputs_withheld,
        "study_jobs": judging_services.jobs_of_study,
        "board_additions": board.board_additions,
        "study_recomputed": board.study_recomputed,
        "board_extras": board.board_extras,
        "board_version": board.board_version,
    }


@pytest.mark.django_db
def test_without_a_sampler_pairs_are_still_served_uniformly(make_study, monkeypatch):
    from arena.models import Annotator
    from tests.conftest import task_next

    monkeypatch.delitem(hooks._registry, "pair_pick")
    study = make_study(kinds=("pairwise",), quota_per_annotator=10)
    annotator = Annotator.objects.create()
    a, _ = task_next(study=study, annotator=annotator, ahead=0)
    assert a.kind == "pairwise" and a.output_left.generator_id != a.output_right.generator_id
