"""keyturn: rotate CI/CD credentials and walk through every follow-up step."""

__version__ = "0.1.0"
