"""What judging adds to the people's leaderboard, handed to ratings through hooks.

ratings computes and shows the human numbers; everything on the board that comes from
automated scorers and MLLM judges is computed here and registered in ``JudgingConfig.ready``:

- ``board_additions(study)``: once per full recompute, a function that gives each criterion's
  stored board its metric agreement, safety figures and question-check audit;
- ``study_recomputed(study)``: after the recompute, the judges sections follow the new human fit;
- ``board_extras(study, criterion, board)``: what the page and the JSON API show beside the
  stored board (metric columns, quality profile, judges section), all read from stored results;
- ``board_version(study, criterion)``: a token part that changes when a judge run finishes.
"""

from __future__ import annotations

from collections.abc import Callable

from arena.models import Study

from .agreement import metric_agreement_compute
from .judge_report import judge_reports_refresh, judges_for_board
from .models import JudgeReport
from .question_checks import question_checks_compute
from .selectors import metrics_for_board, quality_profile, safety_for_board


def board_additions(*, study: Study) -> Callable[..., dict]:
    """Study-wide figures are computed once; the returned function adds them, and the metrics'
    agreement with that criterion's people, to one criterion's overall board."""
    checks = question_checks_compute(study=study)
    safety = safety_for_board(study=study)

    def add(*, criterion, board: dict, base) -> dict:
        return {
            "metric_agreement": metric_agreement_compute(study=study, criterion=criterion, board=board, base=base),
            "safety": safety,
            "question_checks": checks,
        }

    return add


def study_recomputed(*, study: Study) -> None:
    # MLLM judges against the people just refitted (judge votes never enter the human numbers).
    judge_reports_refresh(study=study)


def board_extras(*, study: Study, criterion, board: dict | None) -> dict:
    return {
        "metrics": metrics_for_board(study=study, board=board),
        "profile": quality_profile(study=study),
        "judges": judges_for_board(study=study, criterion=criterion),  # stored by judge runs and the recompute
    }


def board_version(*, study: Study, criterion) -> str:
    judged = JudgeReport.objects.filter(study=study, criterion=criterion).values_list("computed_at", flat=True).first()
    return f"-j{judged.timestamp():.6f}" if judged else ""
