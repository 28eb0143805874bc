"""What tests, benchmarks and the demo run against: real mail servers on loopback.

Not used by the daemon. Installing Dovecot is the set-up script's job (scripts/setup),
not this package's: the stack only finds it, and says how to install it when missing.
"""
