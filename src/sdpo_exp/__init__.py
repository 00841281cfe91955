"""SDPO from user interactions."""
