"""Evaluation: metrics, latency, sweeps, result tables and plots."""
