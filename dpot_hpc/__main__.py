"""`python -m dpot_hpc ...` is the `dpot-hpc` command."""

from .cli import main

main(prog_name="dpot-hpc")
