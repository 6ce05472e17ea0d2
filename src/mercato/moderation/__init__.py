# SPDX-License-Identifier: AGPL-3.0-only
"""Moderation each node controls: denylists (IPIP-383) and on-chain reports.

A node's operator decides what the node serves: `denylist` reads and writes the IPFS
compact denylist format, `lists` keeps the node's own list and its subscriptions,
`matcher` decides, and `policy` combines the lists with the reports indexed from the
chain. Nothing here changes the chain or any other node.
"""
