"""`python -m attemptctl`: the same as the `attemptctl` command."""

from attemptctl.cli import main

main()
