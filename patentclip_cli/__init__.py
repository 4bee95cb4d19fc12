"""The ``patentclip`` command: every subcommand, over the core and the applications.

``main.py`` holds the parser and the core commands (index, search, collections, ...),
``streaming.py`` the Kafka commands (publish, withdraw, reindex, serve) and ``trainer.py``
the trainer's (train, rollout, benchmark, eval sets). Nothing below imports this package.
"""
