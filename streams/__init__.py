"""Turnlog stream processors (Faust): projections, derived topics, dead letters."""
