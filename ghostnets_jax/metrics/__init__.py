"""Metric math on arrays (no model, no input pipeline): retrieval mAP and recall@1, copy detection."""
