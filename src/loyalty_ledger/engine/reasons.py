"""Rejection reasons, named like the PROGRAM.md rule they enforce."""

from enum import StrEnum


class Reason(StrEnum):
    already_signed_up = "already_signed_up"
    currency_mismatch = "currency_mismatch"
    duplicate_order = "duplicate_order"
    unknown_order = "unknown_order"
    already_refunded = "already_refunded"
    self_referral = "self_referral"
    already_referred = "already_referred"
    referee_not_new = "referee_not_new"
    not_enrolled = "not_enrolled"
    duplicate_redemption = "duplicate_redemption"
    unknown_reward = "unknown_reward"
    below_minimum = "below_minimum"
    insufficient_points = "insufficient_points"
    unknown_action = "unknown_action"
    action_limit_reached = "action_limit_reached"
    points_limit = "points_limit"  # a point total of the customer would pass 10^15
    # version 2
    transfers_disabled = "transfers_disabled"
    self_transfer = "self_transfer"
    unknown_plan = "unknown_plan"
    membership_active = "membership_active"
    wrong_fee = "wrong_fee"
