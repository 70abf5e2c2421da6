#!/usr/bin/env python
import os
import sys

# Commands that need neither settings, the installed apps nor a database run without
# django.setup(), which would load the settings (and the Celery app) and import every app's
# models, admin and the REST framework first.
STANDALONE_COMMANDS = {"rate_battles": "ratings.management.commands.rate_battles"}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in STANDALONE_COMMANDS:
        from importlib import import_module

        import_module(STANDALONE_COMMANDS[sys.argv[1]]).Command().run_from_argv(sys.argv)
        return
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "arenasite.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
