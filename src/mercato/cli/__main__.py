# SPDX-License-Identifier: AGPL-3.0-only
"""`python -m mercato.cli` runs the command line."""

from mercato.cli import main

main()
