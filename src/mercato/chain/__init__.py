# SPDX-License-Identifier: AGPL-3.0-only
"""On-chain side of Mercato: compiled contracts, typed wrappers, deploy, local Anvil."""
