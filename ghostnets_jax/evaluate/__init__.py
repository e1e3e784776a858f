"""Evaluation beyond top-1: retrieval metrics."""
