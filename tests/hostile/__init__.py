"""Helpers that build hostile and malformed model files for the read tests."""
