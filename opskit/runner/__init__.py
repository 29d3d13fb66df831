"""Runner: acting on many hosts. The fleet runner (``fleet``: one function on many hosts,
bounded, a result per host), the host pool (``hostpool``: one session per host for runbooks),
runbooks (``runbook``: numbered, journaled steps), ad-hoc commands (``adhoc``) and the one
wait helper (``wait``).

Rule: imports inventory, transport and the top-level utilities; never a domain or a command.
"""
