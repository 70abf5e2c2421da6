"""``manage.py rate_battles FILE [--bootstrap N] [--seed S] [--json] [--anony-only] [--skip-bad]``:
rate a battle log offline. Needs no database; see ``ratings.battles``."""

from __future__ import annotations

import json
import math
from argparse import ArgumentParser
from typing import Any

import numpy as np
from django.core.management.base import BaseCommand, CommandError

from ratings.battles import BattleLog, load_battles, rate_battles
from ratings.bradley_terry import rank_by_interval


def _fmt(value: float | None, width: int) -> str:
    return f"{'-':>{width}}" if value is None or math.isnan(value) else f"{value:>{width}.1f}"


def format_table(rows: list[dict[str, Any]]) -> str:
    """Aligned leaderboard text with the rank by interval (1 + number of models whose lower
    bound exceeds this model's upper bound); without intervals, by the point estimate."""
    low = np.array([r["bt"] if r["bt_ci_low"] is None else r["bt_ci_low"] for r in rows])
    high = np.array([r["bt"] if r["bt_ci_high"] is None else r["bt_ci_high"] for r in rows])
    ranks = rank_by_interval(low, high) if rows else []
    name_width = max([len("model")] + [len(r["model"]) for r in rows])
    header = (
        f"{'rank':>4}  {'model':<{name_width}}  {'BT':>7}  {'CI low':>7}  {'CI high':>7}  {'Elo':>7}  {'n':>7}"
    )
    lines = [header, "-" * len(header)]
    for rank, row in zip(ranks, rows):
        lines.append(
            f"{rank:>4}  {row['model']:<{name_width}}  {_fmt(row['bt'], 7)}  {_fmt(row['bt_ci_low'], 7)}  "
            f"{_fmt(row['bt_ci_high'], 7)}  {_fmt(row['elo'], 7)}  {row['n']:>7}"
        )
    return "\n".join(lines)


def describe_filters(log: BattleLog) -> str | None:
    """One line on rows left out by ``--anony-only`` and refused rows skipped by ``--skip-bad``."""
    parts = []
    if log.left_out:
        parts.append(f"{_count(log.left_out, 'row')} left out as not anonymous")
    if log.skipped:
        kinds = ", ".join(f"{count:,} {reason}" for reason, count in log.skipped.items())
        parts.append(f"{_count(sum(log.skipped.values()), 'bad row')} skipped ({kinds})")
    if not parts:
        return None
    return f"{_count(len(log), 'battle')} rated; " + "; ".join(parts)


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


class Command(BaseCommand):
    help = (
        "Rate a FastChat-style battle log (CSV, JSON Lines, JSON array or Parquet with model_a, "
        "model_b, winner): Bradley-Terry ratings with bootstrap intervals and online Elo, on the Elo scale."
    )
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("file", help="battle log: .csv, .jsonl, .json or .parquet")
        parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap rounds (0 for none)")
        parser.add_argument("--seed", type=int, default=0, help="random seed of the bootstrap")
        parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
        parser.add_argument("--anony-only", action="store_true", help="keep only rows whose anony field is true")
        parser.add_argument(
            "--skip-bad",
            action="store_true",
            help="skip rows with a missing field, an empty or repeated model or an unknown winner, and count them",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["bootstrap"] < 0:
            raise CommandError("--bootstrap must be 0 or more")
        path = options["file"]
        try:
            log = load_battles(path, anony_only=options["anony_only"], skip_bad=options["skip_bad"])
        except FileNotFoundError:
            raise CommandError(f"{path}: no such file") from None
        except (OSError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        rows = rate_battles(log, bootstrap=options["bootstrap"], seed=options["seed"])
        note = describe_filters(log)
        if options["json"]:
            self.stdout.write(json.dumps(rows, indent=2))
            if note:
                self.stderr.write(note)
        else:
            self.stdout.write(format_table(rows))
            if note:
                self.stdout.write(note)
