# SPDX-License-Identifier: AGPL-3.0-only
"""Federated training tasks on Flower: the spec, local data checks, the learners, the
SuperLink and SuperNode processes, the coordinator loop and the participant.

See docs/federation.md for the flow and the trust model.
"""
