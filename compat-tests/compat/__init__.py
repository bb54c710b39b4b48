"""The compatibility tests' modules; compat-tests/run is the entry point.

common     paths, names, Fail/Skip and `run` (every program bounded in time)
spool      messages as queued (doc/SPOOL.md) and as Postfix delivered them
provision  spoolmail's private install and config, the callers' packages
postfix    the private Postfix instance (Debian's package, never installed)
dns        the DNS fixture with the test domains' MX records
servers    the receiving side as one (test CA, Postfix, DNS)
checks     checks on a message, replayed on every delivered copy
cases      the cases, registered with @case
"""
