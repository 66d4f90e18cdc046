"""Incidents, dispatch, consultation and the post-event assessment (later issues)."""
