"""`python -m chiploop`: the `chiploop` command."""

from chiploop.cli import app

app(prog_name="chiploop")
