# SPDX-License-Identifier: AGPL-3.0-only
"""The REST API under /v1: one router per resource, all reading through the index or SDK."""
