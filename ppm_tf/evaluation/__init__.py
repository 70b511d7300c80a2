"""Offline evaluation: ranking metrics shared by data summaries and model reports."""
