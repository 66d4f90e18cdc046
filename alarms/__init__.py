"""Alarm rules, the vectorised evaluator and the ISA-18.2 state machine (issue #4)."""
