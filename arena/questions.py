"""Question checks: the annotator answers each yes/no question of the prompt about one image
(the human protocol of TIFA and DSG). Only outputs whose prompt has questions are served as
such tasks; the answers of one task are stored with its vote, one row per question.

Questions are numbered from 0 in the order the prompt lists them (`Prompt.questions`), in
the API, the form fields (`q0`, `q1`, ...) and the stored answers (`question_index`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from .models import QUESTION_ANSWERS, Output, QuestionAnswer, Vote
from .quoting import quoted

FIELD = re.compile(r"^q(\d{1,4})$")


class AnswerError(ValueError):
    """Answers that do not fit the task's questions; the message names the question."""


def item_key(output_id: int) -> str:
    """The item of a question check: the output, whatever the criterion (its questions are the prompt's)."""
    return f"questions:{output_id}"


def question_outputs(outputs) -> frozenset[int]:
    """Ids of the outputs (a queryset) whose prompt has at least one question."""
    return frozenset(outputs.exclude(prompt__questions=[]).exclude(prompt__questions__isnull=True).values_list("id", flat=True))


def _label(index: int, questions: Sequence[str]) -> str:
    return f"question {index} ({quoted(questions[index])})"


def answers_parse(questions: Sequence[str], given) -> list[bool]:
    """The answers to `questions` (yes -> True, no -> False) from a mapping of question index to
    "yes"/"no" (keys may be numbers or their text) or a list in question order.

    Every question must be answered, once, and nothing else: otherwise AnswerError naming the
    first question (or key) at fault.
    """
    n = len(questions)
    if not n:
        raise AnswerError("this task has no questions")
    if given is None:
        raise AnswerError(f"this task asks {n} yes/no question(s): send an answer (yes or no) for each, or skip")
    if isinstance(given, (list, tuple)):
        given = dict(enumerate(given))
    if not isinstance(given, Mapping):
        raise AnswerError(f"the answers must map each question index (0 to {n - 1}) to yes or no")
    found: dict[int, bool] = {}
    for key, value in given.items():
        text = str(key).strip()
        if not text.isdigit():
            raise AnswerError(f"{quoted(text)} is not a question index; use 0 to {n - 1}")
        index = int(text)
        if index >= n:
            raise AnswerError(f"there is no question {index}: this task has {n} question(s), 0 to {n - 1}")
        if index in found:
            raise AnswerError(f"{_label(index, questions)} is answered twice")
        word = value.strip().lower() if isinstance(value, str) else value
        if word not in QUESTION_ANSWERS:
            raise AnswerError(f"{_label(index, questions)}: answer {quoted(value)} is not yes or no")
        found[index] = QUESTION_ANSWERS[word]
    for index in range(n):
        if index not in found:
            raise AnswerError(f"{_label(index, questions)} has no answer; answer yes or no to every question (or skip)")
    return [found[i] for i in range(n)]


def answers_from_form(data) -> dict[str, str] | None:
    """The `q<index>` fields of a posted form, or None when it has none."""
    found = {}
    for key in data:
        m = FIELD.match(key)
        if m:
            found[m.group(1)] = data.get(key)
    return found or None


def answers_store(*, vote: Vote, questions: Sequence[str], answers: Sequence[bool]) -> None:
    QuestionAnswer.objects.bulk_create(
        [QuestionAnswer(vote=vote, question_index=i, question=q, answer=a) for i, (q, a) in enumerate(zip(questions, answers))]
    )


def answers_of(vote: Vote) -> list[bool]:
    return list(QuestionAnswer.objects.filter(vote=vote).order_by("question_index").values_list("answer", flat=True))


def task_questions(output: Output) -> list[str]:
    """The questions shown with a task on this output (the prompt's, in order)."""
    return list(output.prompt.questions or [])
