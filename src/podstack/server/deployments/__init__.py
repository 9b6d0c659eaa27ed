"""Deployments: serve registered model versions on a target (local processes or KServe)."""
