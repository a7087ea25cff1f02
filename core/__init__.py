"""Pieces shared by every job: settings, the retry discipline, log masking."""
