"""Serving tasks to annotators and recording their votes.

The server alone decides what an annotator sees and which output goes left (a fair
coin per pairwise task). The client answers "left"/"right" for an assignment it was
served; the assignment maps that back to outputs. One vote per assignment is a
database constraint.
"""

from __future__ import annotations

import random
import secrets
import uuid
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from dataclasses import dataclass, field
from functools import lru_cache
from datetime import timedelta

import numpy as np
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.urls import get_script_prefix, reverse
from django.utils import timezone

from . import hooks, questions, rawsql, roles
from .models import (
    ANSWERS, BINARY_ANSWERS, LIKERT_ANSWERS, PAIRWISE_ANSWERS, SKIP,
    Annotator, Assignment, Criterion, Flag, GoldTask, Output, Prompt, Rendition, Study, Vote, VoteKind,
)
from .quoting import quoted
from .selectors import study_outputs, withdrawn_output_ids
from .renditions import rendition_make, study_images_missing_renditions
from .storage import rendition_path
from .tasks import study_renditions_task
from .ttl_cache import TTLCache

_coin = secrets.SystemRandom()



class VoteError(Exception):
    """A vote that cannot be accepted. `status` is the HTTP status to answer with."""

    status = 400

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        if status is not None:
            self.status = status


# --------------------------------------------------------------------------- study index


@dataclass
class StudyIndex:
    """What a study can serve, built once and cached briefly per process."""

    output_generator: dict[int, int] = field(default_factory=dict)
    outputs: list[int] = field(default_factory=list)
    generators: list[int] = field(default_factory=list)
    # (generator_id, prompt_id) -> output ids
    by_gen_prompt: dict[tuple[int, int], list[int]] = field(default_factory=dict)
    # generator index pair (i < j) -> prompt ids both answered
    pair_prompts: dict[tuple[int, int], list[int]] = field(default_factory=dict)
    eligible: np.ndarray | None = None
    criteria: list = field(default_factory=list)
    # output id -> (display rendition url, width, height); outputs without one are not served
    display: dict[int, tuple[str, int, int]] = field(default_factory=dict)
    allowed_users: frozenset[int] = frozenset()
    allowed_groups: frozenset[str] = frozenset()
    # The calibration set: (kind, criterion id, item key, left output, right output), in serving order.
    calibration: list[tuple[str, int, str, int, int | None]] = field(default_factory=list)
    # outputs whose prompt has yes/no questions: the only ones served as question checks
    question_outputs: frozenset[int] = frozenset()
    # output id -> (generator id, prompt id, image id), and the prompts: what a task just reserved
    # shows, without reading it back.
    output_row: dict[int, tuple[int, int, str]] = field(default_factory=dict)
    prompts: dict[int, Prompt] = field(default_factory=dict)
    # (kind, criterion id) -> {item key: output id} of every output a single-image task of that
    # kind and criterion may show, made on first use
    single_keys: dict[tuple[str, int], dict[str, int]] = field(default_factory=dict)

    def output(self, oid: int) -> Output | None:
        """A fresh Output instance for a servable output, its prompt loaded (other fields load on use)."""
        row = self.output_row.get(oid)
        if row is None or row[1] not in self.prompts:
            return None
        out = rawsql.loaded(Output, id=oid, generator_id=row[0], prompt_id=row[1], image_id=row[2])
        out._state.fields_cache["prompt"] = self.prompts[row[1]]
        return out


# A study's index is rebuilt at most every 10 s per process, or at once after its setup changes.
INDEX_CACHE = TTLCache(ttl=10.0, maxsize=256)


RENDER_INLINE_MAX = 16  # a study missing more renditions than this gets them from a task


def _study_display(study: Study, outputs) -> dict[str, tuple[str, int, int]]:
    """image sha256 -> its rendition for the study's box (made here when only a few are missing)."""
    missing = list(study_images_missing_renditions(study, outputs)[: RENDER_INLINE_MAX + 1])
    if len(missing) > RENDER_INLINE_MAX:
        try:
            transaction.on_commit(lambda: study_renditions_task.delay(study.pk))
        except Exception:  # the broker is down: the next index build asks again
            pass
    else:
        for image in missing:
            try:
                rendition_make(image=image, long_side=study.display_long_side, square=study.display_square)
            except FileNotFoundError:
                pass
    rows = Rendition.objects.filter(
        long_side=study.display_long_side, square=study.display_square, source_id__in=outputs.values("image_id")
    ).values_list("source_id", "sha256", "width", "height")
    return {src: (Rendition(sha256=sha).url, w, h, sha) for src, sha, w, h in rows}


def study_index(study: Study) -> StudyIndex:
    """What serving a study needs, built at most once per process every few seconds: while one
    request rebuilds it, the others keep serving from the previous one."""
    key = (study.pk, study.created_at, study.display_long_side, study.display_square)
    return INDEX_CACHE.get_or_make(key, lambda: _study_index_build(study))


def _study_index_build(study: Study) -> StudyIndex:
    idx = StudyIndex()
    idx.criteria = list(study.criteria.all())
    idx.allowed_users = frozenset(study.allowed_users.values_list("id", flat=True))
    idx.allowed_groups = frozenset(study.allowed_groups.values_list("name", flat=True))
    outputs = study_outputs(study)
    by_image = _study_display(study, outputs)
    # Safety screen: outputs withheld until staff release them are never served, nor what staff withdrew.
    withheld = hooks.call("outputs_withheld", study=study, default=set()) | withdrawn_output_ids(study)
    rows = []
    for oid, gid, pid, sha in outputs.values_list("id", "generator_id", "prompt_id", "image_id"):
        if sha in by_image and oid not in withheld:  # only what can be shown blind (and safely) is served
            idx.display[oid] = by_image[sha]
            idx.output_row[oid] = (gid, pid, sha)
            rows.append((oid, gid, pid))
    idx.prompts = Prompt.objects.in_bulk({pid for _, _, pid in rows})
    for oid, gid, pid in rows:
        idx.output_generator[oid] = gid
        idx.by_gen_prompt.setdefault((gid, pid), []).append(oid)
    idx.outputs = list(idx.output_generator)
    idx.question_outputs = questions.question_outputs(outputs) & idx.output_generator.keys()
    idx.generators = sorted({gid for _, gid, _ in rows})
    prompts_of: dict[int, set[int]] = {}
    for gid, pid in idx.by_gen_prompt:
        prompts_of.setdefault(gid, set()).add(pid)
    n = len(idx.generators)
    idx.eligible = np.zeros((n, n), dtype=bool)
    for i in range(n):
        for j in range(i + 1, n):
            common = sorted(prompts_of[idx.generators[i]] & prompts_of[idx.generators[j]])
            if common:
                idx.pair_prompts[(i, j)] = common
                idx.eligible[i, j] = idx.eligible[j, i] = True
    idx.calibration = _calibration_set(study, idx)
    return idx


def _calibration_set(study: Study, idx: StudyIndex) -> list[tuple[str, int, str, int, int | None]]:
    """The study's calibration items: `calibration_items` per vote kind and criterion, fixed per study.

    Drawn with a seed of the study's own, spread over generators (single-image kinds) and over
    generator pairs (pairwise), so every annotator who takes the set sees the same items.
    """
    per = study.calibration_items
    if not per or not idx.outputs:
        return []
    items = []
    for kind in [k for k in study.vote_kinds if k in VoteKind.values and k != VoteKind.QUESTIONS]:
        for criterion in idx.criteria:
            rng = random.Random(f"calibration:{study.pk}:{kind}:{criterion.pk}")
            if kind == VoteKind.PAIRWISE:
                pairs = sorted(idx.pair_prompts)
                rng.shuffle(pairs)
                chosen: dict[str, tuple[int, int]] = {}
                for t in range(per * 4):
                    if len(chosen) >= per or not pairs:
                        break
                    i, j = pairs[t % len(pairs)]
                    ga, gb = idx.generators[i], idx.generators[j]
                    pid = rng.choice(idx.pair_prompts[(i, j)])
                    lo, hi = sorted((rng.choice(idx.by_gen_prompt[(ga, pid)]), rng.choice(idx.by_gen_prompt[(gb, pid)])))
                    chosen.setdefault(f"pairwise:{criterion.pk}:{lo}:{hi}", (lo, hi))
                items += [(kind, criterion.pk, k, lo, hi) for k, (lo, hi) in chosen.items()]
            else:
                by_gen: dict[int, list[int]] = {}
                for oid in sorted(idx.outputs):
                    by_gen.setdefault(idx.output_generator[oid], []).append(oid)
                for outs in by_gen.values():
                    rng.shuffle(outs)
                picked: list[int] = []
                while len(picked) < per and any(by_gen.values()):
                    for gid in sorted(by_gen):
                        if by_gen[gid] and len(picked) < per:
                            picked.append(by_gen[gid].pop())
                items += [(kind, criterion.pk, f"{kind}:{criterion.pk}:{oid}", oid, None) for oid in picked]
    return items


def study_index_clear() -> None:
    """Forget what this process cached about studies and annotators (after a study's setup changed)."""
    INDEX_CACHE.clear()
    ANNOTATOR_CACHE.clear()


# --------------------------------------------------------------------------- annotators


ANNOTATOR_CACHE = TTLCache(ttl=60.0, maxsize=10_000)


def annotator_for_user(user) -> Annotator:
    """The account's annotator (created on first use), remembered briefly per process."""
    return ANNOTATOR_CACHE.get_or_set(user.pk, lambda: Annotator.objects.get_or_create(user=user)[0])


def study_restricted(study: Study) -> bool:
    idx = study_index(study)
    return bool(idx.allowed_users or idx.allowed_groups)


def study_open_to(study: Study, user) -> bool:
    """Whether this account may vote in the study (every annotator, unless it names who may)."""
    idx = study_index(study)
    if not (idx.allowed_users or idx.allowed_groups) or roles.is_admin(user):
        return True
    return user.pk in idx.allowed_users or bool(idx.allowed_groups & roles.user_groups(user))


def annotator_for_crowd(
    *, study: Study, participant_id: str, study_id: str = "", session_id: str = "", client_key: str = ""
) -> Annotator:
    """A pseudonymous annotator bound to an external (Prolific) participant id.

    A participant who already started is resumed only with the same Prolific SESSION_ID
    (the browser session that started it is checked by the caller); a participant id alone
    proves nothing. New participants are limited per client address.
    """
    participant_id = participant_id.strip()
    session_id = session_id.strip()[:100]
    if not participant_id or len(participant_id) > 100 or not participant_id.isprintable():
        raise VoteError("PROLIFIC_PID must be a non-empty id of at most 100 printable characters")
    if study_restricted(study):
        raise VoteError("This study is open to invited annotators only.", status=403)
    existing = Annotator.objects.filter(study=study, external_id=participant_id).first()
    if existing is None:
        limit = settings.ARENA_CROWD_SIGNUPS_PER_HOUR
        if limit and client_key:
            recent = Annotator.objects.filter(
                created_from=client_key, created_at__gte=timezone.now() - timedelta(hours=1)
            ).count()
            if recent >= limit:
                raise VoteError(
                    "Too many new participants have started from your network in the last hour. Please try again later.",
                    status=429,
                )
        try:
            with transaction.atomic():
                return Annotator.objects.create(
                    study=study, external_id=participant_id, external_study_id=study_id.strip()[:100],
                    external_session_id=session_id, created_from=client_key,
                )
        except IntegrityError:
            existing = Annotator.objects.get(study=study, external_id=participant_id)
    if session_id and existing.external_session_id and secrets.compare_digest(session_id, existing.external_session_id):
        return existing
    raise VoteError(
        "This participant has already started the study in another browser. Please continue in the browser "
        "where you started, or open the study again from your Prolific dashboard.",
        status=403,
    )


def annotator_done_count(*, study: Study, annotator: Annotator) -> int:
    return Vote.objects.filter(study=study, annotator=annotator).count()


# --------------------------------------------------------------------------- serving


def _outstanding(study: Study, annotator: Annotator):
    return Assignment.objects.filter(
        study=study, annotator=annotator, answered_at__isnull=True, expires_at__gt=timezone.now()
    ).order_by("served_at")


@dataclass
class ServedTasks:
    current: Assignment | None
    ahead: list[Assignment]
    done: int


def _lock_annotator(annotator: Annotator) -> None:
    """One annotator's votes and reservations go one at a time (the quota holds under races)."""
    sql = "SELECT id FROM arena_annotator WHERE id = %s"
    if connection.features.has_select_for_update:
        sql += " FOR UPDATE"
    with rawsql.cursor() as cursor:
        cursor.execute(sql, [annotator.pk])


def _held_sql(limit: int, done: str, count_served: bool, *, skip_one: bool = False, first: str = "") -> str:
    """SELECT of (votes given, tasks ever served, the first `limit` open tasks' columns), one row
    per open task (one row of NULL task columns when none). `done`: its SQL expression; `first`:
    a column before them; `skip_one`: leave out one task (a parameter after the others)."""
    served = "(SELECT count(*) FROM arena_assignment WHERE annotator_id = %s AND study_id = %s)" if count_served else "NULL"
    cols = rawsql.columns(Assignment, "a").split(", ")
    return (
        f"SELECT {first + ', ' if first else ''}c.done, c.served, " + ", ".join(f"r.c{i}" for i in range(len(cols))) +
        f" FROM (SELECT {done} AS done, {served} AS served) c"
        " LEFT JOIN (SELECT " + ", ".join(f"{c} AS c{i}" for i, c in enumerate(cols)) +
        " FROM arena_assignment a"
        " WHERE a.annotator_id = %s AND a.study_id = %s AND a.answered_at IS NULL AND a.expires_at > %s"
        + (" AND a.id <> %s" if skip_one else "") +
        f" ORDER BY a.served_at LIMIT {int(limit)}) r ON 1 = 1"
    )


@lru_cache(maxsize=64)
def _pending_sql(limit: int, count_done: bool, count_served: bool, vendor: str) -> str:
    done = "(SELECT count(*) FROM arena_vote WHERE annotator_id = %s AND study_id = %s)" if count_done else "NULL"
    return _held_sql(limit, done, count_served)


def _held_params(study: Study, annotator: Annotator, count_served: bool, now) -> list:
    return ([annotator.pk, study.pk] if count_served else []) + [
        annotator.pk, study.pk, rawsql.prep(Assignment, "expires_at", now)]


@dataclass
class _Held:
    done: int  # votes given in the study
    served: int | None  # tasks ever reserved in the study (counted for task blocks only)
    # The first `limit` unanswered, unexpired tasks held, oldest first: all of them when fewer.
    pending: list[Assignment]


def _pending(study: Study, annotator: Annotator, limit: int, *, done: int | None = None) -> _Held:
    """Where the annotator stands in the study, with the first `limit` unanswered tasks (their
    outputs and prompt loaded): one statement. `done`: the votes given, when the caller knows."""
    count_served = bool(study.task_blocks)
    params = ([annotator.pk, study.pk] if done is None else []) + _held_params(study, annotator, count_served, timezone.now())
    with rawsql.cursor() as cursor:
        cursor.execute(_pending_sql(limit, done is None, count_served, connection.vendor), params)
        rows = cursor.fetchall()
    return _held_from_rows(study, rows, done=done)


def _held_from_rows(study: Study, rows, *, done: int | None = None) -> _Held:
    """`_Held` from the rows of `_held_sql` (their first two columns: votes given, tasks served)."""
    criteria = {c.pk: c for c in study_index(study).criteria}
    tasks = []
    for row in rows:
        if row[2] is None:
            break
        a = rawsql.instance(Assignment, row[2:])
        if not _outputs_from_index(study, a):  # an output no longer served: read as it is
            a.output_left.prompt  # noqa: B018 (loads it now, as the index would have)
        if a.criterion_id in criteria:
            a._state.fields_cache["criterion"] = criteria[a.criterion_id]
        tasks.append(a)
    return _Held(rows[0][0] if done is None else done, rows[0][1], tasks)


def _reserve(*, study: Study, annotator: Annotator, ahead: int, done: int | None = None, held: _Held | None = None) -> ServedTasks:
    """Reserve tasks up to `1 + ahead` unanswered ones, within what the quota leaves; the caller
    holds the annotator's lock, so however many requests race, the annotator never holds more
    unanswered tasks than the quota leaves. `done`: the votes given, when the caller knows;
    `held`: where the annotator stands, when the caller already read it (in its lock)."""
    h = held or _pending(study, annotator, 1 + ahead, done=done)
    if study.quota_per_annotator - h.done <= 0 or not study.is_open:
        return ServedTasks(None, [], h.done)
    # Fewer held than asked for means `pending` holds them all; with as many, none is wanted.
    want = min(1 + ahead - len(h.pending), study.quota_per_annotator - h.done - len(h.pending))
    created: list[Assignment] = []
    while len(created) < want:
        served = None if h.served is None else h.served + len(created)
        a = _assignment_create(study=study, annotator=annotator, served=served)
        if a is None:
            break
        created.append(a)
    if created:
        if all(_outputs_from_index(study, a) for a in created):
            h.pending += created  # reserved after every held one, so last in serving order
        else:
            h = _pending(study, annotator, 1 + ahead, done=h.done)
    if not h.pending:
        return ServedTasks(None, [], h.done)
    return ServedTasks(h.pending[0], h.pending[1:], h.done)


def _outputs_from_index(study: Study, a: Assignment) -> bool:
    """Give a just-reserved task its outputs and prompt from the study index (False if it lacks one)."""
    idx = study_index(study)
    left = idx.output(a.output_left_id)
    right = idx.output(a.output_right_id) if a.output_right_id is not None else None
    if left is None or (a.output_right_id is not None and right is None):
        return False
    a._state.fields_cache["output_left"] = left
    a._state.fields_cache["output_right"] = right
    return True


def tasks_serve(*, study: Study, annotator: Annotator, ahead: int = 1) -> ServedTasks:
    """The task to show now, up to `ahead` reserved tasks after it (to preload their images),
    and how many votes the annotator has given in this study.

    `current` is None when the annotator has reached the quota or nothing is left to serve.
    """
    h = _pending(study, annotator, 1 + ahead)
    remaining = study.quota_per_annotator - h.done
    if remaining <= 0 or not study.is_open:
        return ServedTasks(None, [], h.done)
    if len(h.pending) < min(1 + ahead, remaining):
        with transaction.atomic():
            _lock_annotator(annotator)
            return _reserve(study=study, annotator=annotator, ahead=ahead)
    return ServedTasks(h.pending[0], h.pending[1:], h.done)



@dataclass
class Completion:
    """Where an annotator stands when no task is shown, and which code (if any) they get."""

    state: str  # "working", "complete", "no_tasks" or "closed"
    code: str = ""  # the study's completion code, its unserved code, or ""
    code_kind: str = ""  # "completion", "unserved" or ""
    return_url: str = ""  # Prolific's return link with that code (crowd workers only)


def _with_code(url: str, code: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "cc"] + [("cc", code)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def annotator_completion(*, study: Study, annotator: Annotator, done: int, has_task: bool) -> Completion:
    """The one rule for "complete", used by the voting page and the API.

    An annotator who gave the quota's votes is complete and gets the completion code. A crowd
    worker the study cannot serve any more (nothing left for them, or the study closed) gets
    the completion code when they gave the study's minimum (`completion_min_votes`, else the
    quota), and otherwise the study's unserved code, so nobody is stranded without a code.
    Only crowd workers get Prolific links.
    """
    if has_task:
        return Completion("working")
    crowd = bool(annotator.external_id)

    def code(kind: str) -> Completion:
        value = study.completion_code if kind == "completion" else study.unserved_code
        url = ""
        if crowd and study.prolific_completion_url:
            # The study's link carries its completion code; the unserved code goes in its place.
            url = study.prolific_completion_url if kind == "completion" else _with_code(study.prolific_completion_url, value)
        return Completion(state, value, kind, url)

    if done >= study.quota_per_annotator:
        state = "complete"
        return code("completion")
    state = "closed" if not study.is_open else "no_tasks"
    if not crowd:
        return Completion(state)
    minimum = study.completion_min_votes if study.completion_min_votes is not None else study.quota_per_annotator
    return code("completion" if done >= minimum else "unserved")


def _shown(study: Study, oid: int) -> tuple[str, int, int, str]:
    """(content URL, width, height, sha256) of the output's rendition for the study's box."""
    shown = study_index(study).display.get(oid)
    if shown is None:  # the box changed after the task was served
        image = Output.objects.select_related("image").get(pk=oid).image
        r = rendition_make(image=image, long_side=study.display_long_side, square=study.display_square)
        shown = (r.url, r.width, r.height, r.sha256)
    return shown


def task_images(study: Study, a: Assignment) -> list[dict]:
    """What the annotator's page shows of a task: its renditions' sizes, at addresses of that task.

    The address names the assignment and the side, not the image: what one annotator learns
    about an address (a reveal after voting) cannot be matched to what another is shown.
    """
    out = []
    for side, oid in (("left" if a.output_right_id else "single", a.output_left_id), ("right", a.output_right_id)):
        if oid is None:
            continue
        _, width, height, _ = _shown(study, oid)
        out.append({"side": side, "url": _task_image_url(study.slug, a.pk, side), "width": width, "height": height})
    return out


_SOME_TASK = uuid.UUID(int=0)


def _task_image_url(slug: str, assignment_id, side: str) -> str:
    """`reverse("arena:vote_image", ...)`, from its reversed beginning per study: each vote's
    answer gives three or four of these, and reversing walks the URL patterns each time."""
    start = _task_image_start(get_script_prefix(), slug)
    if start is None:
        return reverse("arena:vote_image", args=[slug, assignment_id, side])
    return f"{start}{assignment_id}/{side}/"


@lru_cache(maxsize=256)
def _task_image_start(script_prefix: str, slug: str) -> str | None:
    """What every task image address of the study starts with (None if the pattern no longer
    ends with the task and the side, when each address is reversed in full)."""
    url, tail = reverse("arena:vote_image", args=[slug, _SOME_TASK, "left"]), f"{_SOME_TASK}/left/"
    return url[: -len(tail)] if url.endswith(tail) else None


def task_image_path(study: Study, a: Assignment, side: str):
    """The rendition file behind one side of a task (None for a side the task does not have)."""
    pair = a.output_right_id is not None
    oid = {"single": None if pair else a.output_left_id, "left": a.output_left_id if pair else None,
           "right": a.output_right_id}.get(side)
    if oid is None:
        return None
    return rendition_path(_shown(study, oid)[3])


def _revealed_outputs(study: Study, annotator: Annotator) -> set[int]:
    """Outputs whose generator this annotator was shown (reveal after vote): never served to them again."""
    if not study.reveal_after_vote:
        return set()
    seen: set[int] = set()
    for left, right in Vote.objects.filter(study=study, annotator=annotator).values_list("output_left_id", "output_right_id"):
        seen.add(left)
        if right is not None:
            seen.add(right)
    return seen


def block_order(study: Study, annotator: Annotator) -> list[tuple[str, Criterion]]:
    """The (vote kind, criterion) blocks in the order this annotator meets them (fixed per annotator)."""
    kinds = [k for k in study.vote_kinds if k in VoteKind.values]
    criteria = study_index(study).criteria
    # Question checks ask the prompt's questions, whatever the criterion: one block of them.
    combos = [(k, c) for k in kinds for c in (criteria[:1] if k == VoteKind.QUESTIONS else criteria)]
    random.Random(f"blocks:{study.pk}:{annotator.pk}").shuffle(combos)
    return combos


def _pick_in(*, study, annotator, kind, criterion, rng, hidden, tries: int = 6) -> dict | None:
    if kind == VoteKind.PAIRWISE:
        return _pick_pairwise(study=study, annotator=annotator, criterion=criterion, rng=rng, tries=tries, hidden=hidden)
    return _pick_single(study=study, annotator=annotator, criterion=criterion, kind=kind, rng=rng, hidden=hidden)


def _assignment_create(*, study: Study, annotator: Annotator, attempts: int = 8, served: int | None = None) -> Assignment | None:
    """Pick and reserve one task for the annotator (`served`: how many it was ever given here, when known)."""
    kinds = [k for k in study.vote_kinds if k in VoteKind.values]
    criteria = study_index(study).criteria
    if not kinds or not criteria:
        return None
    rng = random.Random(secrets.randbits(64))
    hidden = _revealed_outputs(study, annotator)
    if study.task_blocks:
        # Tasks come in blocks of one kind and criterion, so a key means one thing inside a block.
        combos = block_order(study, annotator)
        if served is None:
            served = Assignment.objects.filter(study=study, annotator=annotator).count()
        start = (served // max(1, study.block_size)) % len(combos)
        for kind, criterion in combos[start:] + combos[:start]:
            combo = (kind, criterion.pk)
            a = _pick_calibration(study=study, annotator=annotator, rng=rng, hidden=hidden, combo=combo)
            if a is None and study.gold_rate > 0 and rng.random() < study.gold_rate:
                a = _gold_assignment(study=study, annotator=annotator, rng=rng, hidden=hidden, combo=combo)
            if a is None:
                choice = _pick_in(study=study, annotator=annotator, kind=kind, criterion=criterion, rng=rng, hidden=hidden, tries=50)
                if choice is not None:
                    a = _save_assignment(study=study, annotator=annotator, criterion=criterion, kind=kind, **choice)
            if a is not None:
                return a
        return None
    calibration = _pick_calibration(study=study, annotator=annotator, rng=rng, hidden=hidden)
    if calibration is not None:
        return calibration
    for _ in range(attempts):
        if study.gold_rate > 0 and rng.random() < study.gold_rate:
            a = _gold_assignment(study=study, annotator=annotator, rng=rng, hidden=hidden)
            if a is not None:
                return a
        kind = rng.choice(kinds)
        criterion = rng.choice(criteria)
        choice = _pick_in(study=study, annotator=annotator, kind=kind, criterion=criterion, rng=rng, hidden=hidden)
        if choice is None:
            # Nothing of this kind/criterion left for this annotator; try another draw,
            # then every combination before giving up.
            continue
        a = _save_assignment(study=study, annotator=annotator, criterion=criterion, kind=kind, **choice)
        if a is not None:
            return a
    for kind in kinds:
        for criterion in criteria:
            choice = _pick_in(study=study, annotator=annotator, kind=kind, criterion=criterion, rng=rng, hidden=hidden, tries=50)
            if choice is not None:
                a = _save_assignment(study=study, annotator=annotator, criterion=criterion, kind=kind, **choice)
                if a is not None:
                    return a
    return None


def _save_assignment(*, study, annotator, criterion, kind, left: int, right: int | None, item_key: str, gold=None) -> Assignment | None:
    now = timezone.now()
    a = rawsql.new(
        Assignment,
        study_id=study.pk,
        criterion_id=criterion.pk,
        annotator_id=annotator.pk,
        kind=kind,
        output_left_id=left,
        output_right_id=right,
        item_key=item_key,
        gold_id=gold.pk if gold is not None else None,
        served_at=now,
        expires_at=now + timedelta(seconds=settings.ARENA_ASSIGNMENT_TTL_SECONDS),
    )
    rawsql.related(a, study=study, criterion=criterion, annotator=annotator, gold=gold)
    # The same item just reserved for this annotator (a second tab) is not stored twice; no
    # savepoint is needed, so a failed insert costs no extra round trips inside a transaction.
    return a if rawsql.insert(a, ignore_conflicts=True) else None


def _pick_calibration(*, study, annotator, rng, hidden, combo=None) -> Assignment | None:
    """A calibration item this annotator has not had, while it has fewer than k annotators."""
    idx = study_index(study)
    if not idx.calibration:
        return None
    k = max(1, min(study.calibration_annotators, study.overlap_target))
    items = [c for c in idx.calibration if c[3] not in hidden and c[4] not in hidden and (combo is None or c[:2] == combo)]
    counts, seen = _item_counts(study, annotator, [c[2] for c in items])
    fresh = [c for c in items if c[2] not in seen]
    if not fresh:
        return None
    open_items = [c for c in fresh if counts.get(c[2], 0) < k]
    if not open_items:
        return None
    rng.shuffle(open_items)  # each annotator meets the set in an order of their own
    criteria = {c.pk: c for c in idx.criteria}
    for kind, criterion_id, key, left, right in open_items[:8]:
        if right is not None and _coin.random() < 0.5:
            left, right = right, left
        a = _save_assignment(study=study, annotator=annotator, criterion=criteria[criterion_id], kind=kind,
                             left=left, right=right, item_key=key)
        if a is not None:
            return a
    return None


# Items answered by `overlap_target` annotators are never served again (an answer is not taken
# back), so once the sampler has counted one it skips it without counting it again. Per process
# and study, forgotten every minute (a changed overlap target or deleted votes show by then).
ANSWERED_OUT = TTLCache(ttl=60.0, maxsize=256)


def _answered_out(study: Study) -> set[str]:
    """Keys of this study's items already answered by `overlap_target` distinct annotators."""
    return ANSWERED_OUT.get_or_set((study.pk, study.created_at, study.overlap_target), set)


def _item_counts(study: Study, annotator: Annotator, keys: list[str]) -> tuple[dict[str, int], set[str]]:
    """For these items: how many distinct annotators hold or answered each (expired and skipped
    tasks don't count), and which this annotator was ever served. One statement. Items it finds
    answered `overlap_target` times join :func:`_answered_out`."""
    if not keys:
        return {}, set()
    # Distinct annotators holding or having answered it, whether this annotator was served it,
    # distinct annotators having answered it.
    counted = ("count(DISTINCT CASE WHEN skipped = %s AND (answered_at IS NOT NULL OR expires_at > %s)"
               " THEN annotator_id END) AS n, max(CASE WHEN annotator_id = %s THEN 1 ELSE 0 END) AS mine,"
               " count(DISTINCT CASE WHEN skipped = %s AND answered_at IS NOT NULL THEN annotator_id END) AS answered")
    now = rawsql.prep(Assignment, "expires_at", timezone.now())
    if connection.vendor == "postgresql":
        # One index probe per key, whatever the statistics say: with an IN list, a plan made
        # before the table was analyzed reads every assignment of the study and filters them.
        # The keys travel as one comma-joined text (keys are made of names, digits and colons):
        # psycopg adapts an array parameter element by element, on every pick.
        joined = ",".join(keys)
        if joined.count(",") == len(keys) - 1:
            listed, param = "string_to_array(%s::text, ',')::varchar[]", joined
        else:
            listed, param = "%s::varchar[]", list(keys)
        sql = (f"SELECT k.key, c.n, c.mine, c.answered FROM unnest({listed}) AS k(key) CROSS JOIN LATERAL"
               f" (SELECT {counted} FROM arena_assignment WHERE study_id = %s AND item_key = k.key) c"
               " WHERE c.mine IS NOT NULL")
        params = [param, False, now, annotator.pk, False, study.pk]
    else:
        sql = (f"SELECT item_key, {counted} FROM arena_assignment"
               f" WHERE study_id = %s AND item_key IN ({', '.join(['%s'] * len(keys))}) GROUP BY item_key")
        params = [False, now, annotator.pk, False, study.pk, *keys]
    with rawsql.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    _answered_out(study).update(k for k, _, _, answered in rows if answered >= study.overlap_target)
    return {k: n for k, n, _, _ in rows if n}, {k for k, _, mine, _ in rows if mine}


def _fewest_first(study: Study, annotator: Annotator, keys: list[str], rng: random.Random) -> str | None:
    out = _answered_out(study)
    keys = [k for k in keys if k not in out]
    if not keys:
        return None
    counts, seen = _item_counts(study, annotator, keys)
    fresh = [k for k in keys if k not in seen]
    # An item is served to at most `overlap_target` distinct annotators.
    fresh = [k for k in fresh if counts.get(k, 0) < study.overlap_target]
    if not fresh:
        return None
    low = min(counts.get(k, 0) for k in fresh)
    return rng.choice([k for k in fresh if counts.get(k, 0) == low])


def _pick_single(*, study, annotator, criterion, kind, rng, sample: int = 40, hidden=frozenset()) -> dict | None:
    idx = study_index(study)
    outputs = idx.outputs

    def key_of(oid: int) -> str:
        return f"{kind}:{criterion.pk}:{oid}"

    if kind == VoteKind.QUESTIONS:  # outputs with questions, under the study's first criterion only
        if criterion.pk != idx.criteria[0].pk:
            return None
        outputs, key_of = [o for o in outputs if o in idx.question_outputs], questions.item_key
    servable = outputs
    if hidden:
        outputs = [o for o in outputs if o not in hidden]
    if not outputs:
        return None
    candidates = rng.sample(outputs, min(sample, len(outputs)))
    keys = {key_of(oid): oid for oid in candidates}
    key = _fewest_first(study, annotator, list(keys), rng)
    if key is None and len(outputs) > sample:
        every = idx.single_keys.get((kind, criterion.pk))
        if every is None:
            every = idx.single_keys[(kind, criterion.pk)] = {key_of(oid): oid for oid in servable}
        keys = {k: oid for k, oid in every.items() if oid not in hidden} if hidden else every
        key = _fewest_first(study, annotator, list(keys), rng)
    if key is None:
        return None
    return {"left": keys[key], "right": None, "item_key": key}


def _pair_uniform(*, eligible: np.ndarray, rng: np.random.Generator, **_) -> tuple[int, int] | None:
    """Any eligible pair, uniformly: the pick when no sampler is installed."""
    i, j = np.nonzero(np.triu(eligible | eligible.T, 1))
    if i.size == 0:
        return None
    k = int(rng.integers(i.size))
    return int(i[k]), int(j[k])


def _pick_pairwise(*, study, annotator, criterion, rng, tries: int = 6, hidden=frozenset()) -> dict | None:
    idx = study_index(study)
    if idx.eligible is None or not idx.eligible.any():
        return None
    eligible = idx.eligible.copy()
    np_rng = np.random.default_rng(rng.getrandbits(64))
    for _ in range(tries):
        picked = hooks.call("pair_pick", study=study, criterion=criterion, generators=idx.generators, eligible=eligible,
                            rng=np_rng, fallback=_pair_uniform)
        if picked is None:
            return None
        i, j = picked
        i, j = min(i, j), max(i, j)
        ga, gb = idx.generators[i], idx.generators[j]
        keys: dict[str, tuple[int, int]] = {}
        prompts = idx.pair_prompts[(i, j)]
        for pid in rng.sample(prompts, min(20, len(prompts))):
            left_pool = [o for o in idx.by_gen_prompt[(ga, pid)] if o not in hidden]
            right_pool = [o for o in idx.by_gen_prompt[(gb, pid)] if o not in hidden]
            if not left_pool or not right_pool:
                continue
            oa = rng.choice(left_pool)
            ob = rng.choice(right_pool)
            lo, hi = min(oa, ob), max(oa, ob)
            keys[f"pairwise:{criterion.pk}:{lo}:{hi}"] = (lo, hi)
        key = _fewest_first(study, annotator, list(keys), rng)
        if key is None:
            eligible[i, j] = eligible[j, i] = False
            continue
        a, b = keys[key]
        if _coin.random() < 0.5:  # fair coin: which output is shown on the left
            a, b = b, a
        return {"left": a, "right": b, "item_key": key}
    return None


def _gold_assignment(*, study, annotator, rng, hidden=frozenset(), combo=None) -> Assignment | None:
    kinds = set(study.vote_kinds)
    idx = study_index(study)
    golds_qs = GoldTask.objects.filter(study=study, kind__in=kinds)
    if combo is not None:
        golds_qs = golds_qs.filter(kind=combo[0], criterion_id=combo[1])
    golds = [
        gid
        for gid, left, right in golds_qs.values_list("id", "output_id", "other_output_id")
        if left not in hidden and right not in hidden and left in idx.display and (right is None or right in idx.display)
    ]
    if not golds:
        return None
    keys = {f"gold:{gid}": gid for gid in golds}
    seen = set(
        Assignment.objects.filter(annotator=annotator, study=study, item_key__in=list(keys)).values_list("item_key", flat=True)
    )
    fresh = [k for k in keys if k not in seen]
    if not fresh:
        return None
    gold = GoldTask.objects.get(pk=keys[rng.choice(fresh)])
    left, right = gold.output_id, gold.other_output_id
    if gold.kind == VoteKind.PAIRWISE and _coin.random() < 0.5:
        left, right = right, left
    return _save_assignment(
        study=study, annotator=annotator, criterion=gold.criterion, kind=gold.kind,
        left=left, right=right, item_key=f"gold:{gold.pk}", gold=gold,
    )


# --------------------------------------------------------------------------- voting


@dataclass
class VoteResult:
    vote: Vote | None
    created: bool
    skipped: bool = False
    # The tasks to show next, reserved in the vote's transaction (when asked for with `serve_ahead`).
    next: ServedTasks | None = None


def _parse_answer(kind: str, answer: str) -> tuple[int | None, str]:
    answer = (answer or "").strip().lower()
    if kind == VoteKind.LIKERT and answer in LIKERT_ANSWERS:
        return int(answer), ""
    if kind == VoteKind.BINARY and answer in BINARY_ANSWERS:
        return BINARY_ANSWERS[answer], ""
    if kind == VoteKind.PAIRWISE and answer in PAIRWISE_ANSWERS:
        return None, answer
    *first, last = ANSWERS[kind]
    allowed = f"{', '.join(first)} or {last}"
    raise VoteError(f"answer {quoted(answer)} is not valid for a {kind} task; use {allowed} (or skip)")


def _gold_correct(gold: GoldTask, a: Assignment, score: int | None, choice: str) -> bool:
    exp = gold.expected_answer.strip().lower()
    if gold.kind == VoteKind.LIKERT:
        return score is not None and exp.isdigit() and abs(score - int(exp)) <= 1
    if gold.kind == VoteKind.BINARY:
        return score == BINARY_ANSWERS.get(exp)
    if exp == "tie":
        return choice == "tie"
    better = gold.output_id if exp == "output" else gold.other_output_id
    chosen = {"left": a.output_left_id, "right": a.output_right_id}.get(choice)
    return chosen == better


def _parse_questions(a: Assignment, given) -> list[bool]:
    """The answers of a question check (one per question of the prompt), or VoteError naming the question."""
    if a.kind != VoteKind.QUESTIONS:
        if given is not None:
            raise VoteError(f"this is a {a.kind} task: answers to questions are taken only by question checks")
        return []
    try:
        return questions.answers_parse(questions.task_questions(a.output_left), given)
    except questions.AnswerError as exc:
        raise VoteError(str(exc)) from None


def _assignment_uuid(value) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise VoteError("no such task was served to you", status=404) from None


def _assignment_for_vote(assignment_id: uuid.UUID, annotator: Annotator, study: Study) -> Assignment | None:
    """The annotator's assignment in this study, with its study (read fresh) and its outputs and
    prompt (from the study index, else read) loaded, the assignment and the annotator row-locked
    (as `_lock_annotator`): one statement."""
    sql = (
        f"SELECT {rawsql.columns(Assignment, 'a')}, {rawsql.columns(Study, 's')}"
        " FROM arena_assignment a JOIN arena_study s ON s.id = a.study_id JOIN arena_annotator an ON an.id = a.annotator_id"
        " WHERE a.id = %s AND a.annotator_id = %s AND a.study_id = %s"
    )
    if connection.features.has_select_for_update_of:
        sql += " FOR UPDATE OF a, an"
    with rawsql.cursor() as cursor:
        cursor.execute(sql, [rawsql.prep(Assignment, "id", assignment_id), annotator.pk, study.pk])
        row = cursor.fetchone()
    if row is None:
        return None
    n = rawsql.width(Assignment)
    a = rawsql.instance(Assignment, row[:n])
    a._state.fields_cache["study"] = rawsql.instance(Study, row[n:])
    if not _outputs_from_index(study, a):  # an output no longer served: read as it is
        a.output_left.prompt  # noqa: B018
    return a


def _vote_store(a: Assignment, vote: Vote, annotator: Annotator, now, *, held_limit: int | None) -> tuple[bool, _Held | None]:
    """Mark the assignment answered and store the vote, unless the annotator already gave the
    study's quota of votes (counted after the annotator's lock was taken, so racing votes cannot
    both pass). Returns whether the vote was stored and, with `held_limit`, where the annotator
    stands after it (`_Held`, read in the same statement on PostgreSQL, else None)."""
    quota = a.study.quota_per_annotator
    if connection.vendor == "postgresql" and held_limit is not None:
        # One statement: the count, the mark, the vote and the tasks still held. Its parts see one
        # snapshot, so the task just answered is left out of the held ones by its id.
        count_served = bool(a.study.task_blocks)
        columns, values = rawsql.insert_values(vote)
        sql = (
            "WITH done AS (SELECT count(*) AS n FROM arena_vote WHERE annotator_id = %s AND study_id = %s),"
            " marked AS (UPDATE arena_assignment SET answered_at = %s FROM done"
            "  WHERE arena_assignment.id = %s AND done.n < %s RETURNING done.n),"
            f" stored AS (INSERT INTO arena_vote ({columns}) SELECT {rawsql.insert_placeholders(Vote)} FROM marked RETURNING id) "
            + _held_sql(held_limit, "(SELECT n FROM marked)", count_served, skip_one=True, first="(SELECT id FROM stored)")
        )
        params = [annotator.pk, a.study_id, rawsql.prep(Assignment, "answered_at", now), rawsql.prep(Assignment, "id", a.pk),
                  quota, *values, *_held_params(a.study, annotator, count_served, now), rawsql.prep(Assignment, "id", a.pk)]
        with rawsql.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        if rows[0][0] is None:
            return False, None
        rawsql.inserted(vote, rows[0][0])
        held = _held_from_rows(a.study, [row[1:] for row in rows])
        held.done += 1  # counted before this vote
        return True, held
    sql = ("UPDATE arena_assignment SET answered_at = %s WHERE"
           " (SELECT count(*) FROM arena_vote WHERE annotator_id = %s AND study_id = %s) < %s AND id = %s")
    with rawsql.cursor() as cursor:
        cursor.execute(sql, [rawsql.prep(Assignment, "answered_at", now), annotator.pk, a.study_id, quota,
                             rawsql.prep(Assignment, "id", a.pk)])
        if cursor.rowcount != 1:
            return False, None
    rawsql.insert(vote)
    return True, None


def vote_record(*, assignment_id, annotator: Annotator, answer: str, study: Study,
                question_answers=None, serve_ahead: int | None = None) -> VoteResult:
    """Record the answer to one served assignment of this study, exactly once.

    A question check takes `question_answers` (question index -> "yes"/"no", see
    arena.questions) instead of an answer; "skip" skips it as any task.

    Resubmitting the same answer (double click, network retry) stores nothing and
    succeeds; a different answer to an answered assignment is refused (409), and so is
    a vote past the study's quota (403).

    With `serve_ahead`, the tasks to show next (as `tasks_serve(ahead=serve_ahead)` gives them)
    are reserved in the same transaction and returned as `next`.
    """
    assignment_id = _assignment_uuid(assignment_id)
    with transaction.atomic():
        a = _assignment_for_vote(assignment_id, annotator, study)
        if a is None:
            raise VoteError("no such task was served to you in this study", status=404)
        answer = (answer or "").strip().lower()
        if a.answered_at is not None:
            existing = Vote.objects.filter(assignment=a).first()
            if answer == SKIP and a.skipped:
                return VoteResult(vote=None, created=False, skipped=True)
            if existing is not None and answer != SKIP:
                if a.kind == VoteKind.QUESTIONS:
                    if _parse_questions(a, question_answers) == questions.answers_of(existing):
                        return VoteResult(vote=existing, created=False)
                    raise VoteError("this task was already answered", status=409)
                score, choice = _parse_answer(a.kind, answer)
                if existing.score == score and existing.choice == choice:
                    return VoteResult(vote=existing, created=False)
            raise VoteError("this task was already answered", status=409)
        now = timezone.now()
        if a.expires_at <= now:
            raise VoteError("this task has expired; please take the next one", status=410)
        if not a.study.is_open:
            raise VoteError("this study is closed", status=403)
        if answer == SKIP:
            a.answered_at = now
            a.skipped = True
            a.save(update_fields=["answered_at", "skipped"])
            served = _reserve(study=a.study, annotator=annotator, ahead=serve_ahead) if serve_ahead is not None else None
            return VoteResult(vote=None, created=False, skipped=True, next=served)
        answers = _parse_questions(a, question_answers)
        score, choice = (None, "") if a.kind == VoteKind.QUESTIONS else _parse_answer(a.kind, answer)
        gen_left = a.output_left.generator_id
        gen_right = a.output_right.generator_id if a.output_right_id else None
        vote = rawsql.new(
            Vote,
            assignment_id=a.pk,
            study_id=a.study_id,
            criterion_id=a.criterion_id,
            annotator_id=annotator.pk,
            kind=a.kind,
            output_left_id=a.output_left_id,
            output_right_id=a.output_right_id,
            generator_left_id=gen_left,
            generator_right_id=gen_right,
            prompt_category=a.output_left.prompt.category,
            score=score,
            choice=choice,
            response_ms=max(0, int((now - a.served_at).total_seconds() * 1000)),
            is_gold=a.gold_id is not None,
            gold_correct=_gold_correct(a.gold, a, score, choice) if a.gold_id else None,
        )
        rawsql.related(vote, assignment=a, annotator=annotator)
        # With reveal after vote, held tasks may be withdrawn below: read where the annotator
        # stands after that, not with the vote.
        held_limit = 1 + serve_ahead if serve_ahead is not None and not a.study.reveal_after_vote else None
        stored, held = _vote_store(a, vote, annotator, now, held_limit=held_limit)
        if not stored:
            raise VoteError(f"you have already given this study's {a.study.quota_per_annotator} votes", status=403)
        a.answered_at = now
        if answers:
            questions.answers_store(vote=vote, questions=questions.task_questions(a.output_left), answers=answers)
        if a.study.reveal_after_vote:
            # The generators are shown next: tasks already reserved with these images are withdrawn.
            shown = [o for o in (a.output_left_id, a.output_right_id) if o is not None]
            Assignment.objects.filter(study_id=a.study_id, annotator=annotator, answered_at__isnull=True).filter(
                Q(output_left_id__in=shown) | Q(output_right_id__in=shown)
            ).exclude(pk=a.pk).update(expires_at=now)
        if not vote.is_gold:
            study_id, criterion_id = a.study_id, a.criterion_id
            transaction.on_commit(lambda: _vote_committed(study_id=study_id, criterion_id=criterion_id))
        served = _reserve(study=a.study, annotator=annotator, ahead=serve_ahead, held=held) if serve_ahead is not None else None
    return VoteResult(vote=vote, created=True, next=served)


def _vote_committed(*, study_id: int, criterion_id: int) -> None:
    """After the commit: the vote is stored, so nothing here may turn its answer into an error.
    What this fails to queue, the next vote, page view or periodic sweep queues."""
    hooks.call_safely("vote_committed", study_id=study_id, criterion_id=criterion_id)


def flag_record(*, annotator: Annotator, assignment_id, side: str, reason: str, note: str = "", study: Study):
    if reason not in Flag.Reason.values:
        raise VoteError(f"reason must be one of {', '.join(Flag.Reason.values)}")
    try:
        a = Assignment.objects.get(pk=_assignment_uuid(assignment_id), annotator=annotator, study=study)
    except Assignment.DoesNotExist:
        raise VoteError("no such task was served to you", status=404) from None
    output_id = a.output_right_id if side == "right" else a.output_left_id
    if output_id is None:
        raise VoteError("this task has no right image", status=400)
    flag, _ = Flag.objects.get_or_create(
        output_id=output_id, annotator=annotator, reason=reason, defaults={"assignment": a, "note": note[:500]}
    )
    return flag


