"""Coordinates, GeoJSON, consequence models and hazard-source grading (later issues)."""
