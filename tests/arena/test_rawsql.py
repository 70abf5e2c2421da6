"""The voting path's row reader and instance maker (arena.rawsql) give what the ORM gives."""

import pytest
from django.db.models import signals

from arena import rawsql
from arena.models import Assignment, Output, Study, Vote
from arena.voting import annotator_for_user, vote_record
from tests.conftest import task_next

pytestmark = pytest.mark.django_db


def _attrs(obj) -> dict:
    return {f.attname: getattr(obj, f.attname) for f in type(obj)._meta.concrete_fields}


def _row(model, pk):
    with rawsql.cursor() as cursor:
        cursor.execute(f"SELECT {rawsql.columns(model, 'x')} FROM {model._meta.db_table} x WHERE x.id = %s",
                       [rawsql.prep(model, "id", pk)])
        return cursor.fetchone()


def _voted(study, user):
    annotator = annotator_for_user(user)
    task, _ = task_next(study=study, annotator=annotator)
    answer = {"pairwise": "left", "likert": "4", "binary": "good"}[task.kind]
    return vote_record(assignment_id=task.pk, annotator=annotator, answer=answer, study=study).vote


@pytest.mark.parametrize("model", [Study, Assignment, Vote])
def test_a_row_read_by_the_voting_path_equals_the_orms_instance(annotator_user, make_study, model):
    study = make_study(kinds=("pairwise",))
    vote = _voted(study, annotator_user)
    pk = {Study: study.pk, Assignment: vote.assignment_id, Vote: vote.pk}[model]
    orm = model.objects.get(pk=pk)

    read = rawsql.instance(model, _row(model, pk))

    assert type(read) is model and read.pk == orm.pk
    assert _attrs(read) == _attrs(orm)
    assert {k: type(v) for k, v in _attrs(read).items()} == {k: type(v) for k, v in _attrs(orm).items()}
    assert (read._state.adding, read._state.db) == (False, orm._state.db)
    # It behaves as a loaded row: related objects are read on demand, and it saves in place.
    if model is not Study:
        assert read.study == study
    read.save()
    assert model.objects.filter(pk=pk).count() == 1
    assert _attrs(model.objects.get(pk=pk)) == _attrs(orm)


def test_a_new_instance_equals_the_constructors_and_saves(annotator_user, make_study):
    study = make_study(kinds=("pairwise",))
    vote = _voted(study, annotator_user)
    values = {f.attname: getattr(vote, f.attname) for f in Vote._meta.concrete_fields if f.attname != "id"}
    values["assignment_id"] = task_next(study=study, annotator=vote.annotator)[0].pk

    made, built = rawsql.new(Vote, **values), Vote(**values)

    assert _attrs(made) == _attrs(built)
    assert made._state.adding and made._state.db is None
    made.save()
    assert Vote.objects.filter(pk=made.pk, assignment_id=values["assignment_id"]).exists()
    # A field left out takes its default, as with the constructor: a new task id for each.
    a, b = rawsql.new(Assignment, study_id=study.pk), rawsql.new(Assignment, study_id=study.pk)
    assert a.pk is not None and a.pk != b.pk and a.skipped is False
    with pytest.raises(TypeError, match="no field attribute study_slug"):
        rawsql.new(Assignment, study_slug="x")


def test_init_signal_listeners_still_hear_instances_of_their_model(annotator_user, make_study):
    study = make_study(kinds=("pairwise",))
    heard = []

    def listener(sender, instance, **kwargs):
        heard.append(instance)

    signals.post_init.connect(listener, sender=Study)
    try:
        read = rawsql.instance(Study, _row(Study, study.pk))
        made = rawsql.new(Study, name="x", slug="x")
    finally:
        signals.post_init.disconnect(listener, sender=Study)
    assert read in heard and made in heard
    assert _attrs(read) == _attrs(Study.objects.get(pk=study.pk))


def test_a_partly_loaded_instance_reads_its_other_fields_on_use(annotator_user, make_study):
    study = make_study(kinds=("pairwise",))
    orm = Output.objects.get(pk=_voted(study, annotator_user).output_left_id)

    part = rawsql.loaded(Output, id=orm.pk, generator_id=orm.generator_id, prompt_id=orm.prompt_id)

    assert part.get_deferred_fields() == {f.attname for f in Output._meta.concrete_fields} - {
        "id", "generator_id", "prompt_id"}
    assert _attrs(part) == _attrs(orm)  # each deferred field read on first use
    assert part.generator.name == orm.generator.name and not part._state.adding
