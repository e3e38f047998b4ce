"""``python -m lockgate.fleet``: the ``lockgate`` command, for child processes."""

from .cli import main

main(prog_name="lockgate")
