"""mailflow: the support mailbox runs the support process."""

__version__ = "0.1.0"
