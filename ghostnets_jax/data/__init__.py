"""Input pipeline pieces."""
