"""Transport: reaching one host. The TCP socket (``tcp``), the checked SSH connection
(``connection``), Fabric's quick runner (``quick_runner``), programs talked to over a channel
(``process``), one host's steps (``session``) and what can go wrong (``errors``).

Rule: imports only ``opskit.inventory`` (for ``Host``) and the top-level utilities.
"""
