# SPDX-License-Identifier: AGPL-3.0-only
"""Mercato: a decentralized marketplace for AI models."""

__version__ = "0.1.0"
