from django.apps import AppConfig


class RatingsConfig(AppConfig):
    name = "ratings"
    verbose_name = "Ratings"

    def ready(self) -> None:
        from arena import hooks

        from . import selectors, services

        hooks.register("vote_committed", services.ratings_vote_committed)
        hooks.register("votes_recounted", services.votes_recounted)
        hooks.register("pair_pick", selectors.pair_pick)
