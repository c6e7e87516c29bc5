"""Ops Lab's sample app: a small FastAPI todo app built to be deployed and operated.

The package knows nothing of the course: it is what a learner builds, ships and runs.
"""

__version__ = "1.0.0"

__all__ = ["__version__"]
