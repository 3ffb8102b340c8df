"""The compliance policy: policy files in, pure decisions out (DESIGN §4)."""

from ptsp_gate.policy.decide import Verdict, decide, decision_id, rejected
from ptsp_gate.policy.files import (
    Policy,
    PolicyBook,
    PolicyError,
    load_policy_book,
    load_policy_file,
)

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
