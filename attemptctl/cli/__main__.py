"""`python -m attemptctl.cli`: the same as the `attemptctl` command."""

from attemptctl.cli import main

main()
