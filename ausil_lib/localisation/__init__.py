"""Temporal localisation: which part of a query appears where in a video, and at what speed (issue 15)."""
