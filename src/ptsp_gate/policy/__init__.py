"""The compliance policy (DESIGN §4): policy files in, pure decisions out.

`model` is the `Policy` a region may tune and `files` loads it from policy files; `codes` says
which reason codes may block, `checks` finds the reasons and `decide` turns them into a verdict
and its decision id; `overrides` applies an officer override to a verdict.
"""

from ptsp_gate.policy.decide import Verdict, decide, decision_id, rejected
from ptsp_gate.policy.files import PolicyBook, PolicyError, load_policy_book, load_policy_file
from ptsp_gate.policy.model import Policy

__all__ = [
    "Policy",
    "PolicyBook",
    "PolicyError",
    "Verdict",
    "decide",
    "decision_id",
    "load_policy_book",
    "load_policy_file",
    "rejected",
]
