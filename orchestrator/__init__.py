"""Real-time customer journey orchestrator: events in, next best actions out."""

__version__ = "0.1.0"
