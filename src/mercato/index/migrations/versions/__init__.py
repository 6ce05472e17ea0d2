# SPDX-License-Identifier: AGPL-3.0-only
"""One module per schema revision."""
