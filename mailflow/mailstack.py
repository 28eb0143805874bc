"""Moved to :mod:`mailflow.testing.mailstack`; this name stays importable for scripts
written against earlier versions."""

from mailflow.testing.mailstack import *  # noqa: F403
from mailflow.testing.mailstack import PASSWORD, LmtpRelay, MailStack, _wait_port, free_port

__all__ = ["PASSWORD", "LmtpRelay", "MailStack", "_wait_port", "free_port"]
