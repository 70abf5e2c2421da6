from django.apps import AppConfig


class JudgingConfig(AppConfig):
    name = "judging"
    verbose_name = "Judging"

    def ready(self) -> None:
        from arena import hooks

        from . import board, checks, screening, services  # noqa: F401  (checks: registers the judge settings check)

        hooks.register("outputs_imported", services.scoring_enqueue_outputs)
        hooks.register("outputs_withheld", screening.outputs_withheld)
        hooks.register("study_jobs", services.jobs_of_study)
        hooks.register("board_additions", board.board_additions)
        hooks.register("study_recomputed", board.study_recomputed)
        hooks.register("board_extras", board.board_extras)
        hooks.register("board_version", board.board_version)
