# SPDX-License-Identifier: AGPL-3.0-only
"""Mercato's HTTP side: REST API, IPFS trustless-gateway endpoints and the web UI.

One `APIRouter` per resource; `ipfs.create_ipfs_router` serves the node's blocks.
"""
