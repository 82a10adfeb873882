"""Benchmarks of DevoLearn Web (`python -m bench`): never imported by the app."""
