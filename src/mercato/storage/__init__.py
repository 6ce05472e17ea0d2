# SPDX-License-Identifier: AGPL-3.0-only
"""Content-addressed model storage, compatible with IPFS.

- `unixfs`: the importer; CIDs match kubo's `ipfs add` (CIDv0 default, CIDv1 raw leaves).
- `blockstore`: the local store in the node's data directory (atomic, verified, pins, gc).
- `exporter`: verified streaming reads and atomic export of a file from any block source.
- `car`: CAR v1 export and import, to move DAGs to and from any IPFS node.
- `backends`: the local store, a kubo node (HTTP RPC) and trustless gateways behind one
  protocol.
"""
