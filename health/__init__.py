"""Liveness probe: ``GET /api/health`` answers whether the app's settings are complete."""
