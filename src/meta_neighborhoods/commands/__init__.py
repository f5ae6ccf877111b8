"""The sub-commands, one module each: ``add_parser(subparsers)`` registers it, ``run(args)`` does its work, and
``options_from_record(record)``, where a command has one, turns the record its runs write (``config.json``,
``results.json``, ...) into its options for ``--config``, which every command takes (``config_file.py``).

``COMMANDS`` is the order in which ``meta-neighborhoods --help`` lists them. Importing a command module is
cheap: each imports its experiment (torch, scikit-learn) inside ``run``, so ``--help`` starts fast.
"""

from . import ablate, analyze, classify, export, fit, predict, regress, spiral

COMMANDS = (spiral, regress, ablate, fit, predict, classify, analyze, export)
