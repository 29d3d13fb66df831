"""Fabric tasks for every opskit command, made from opskit's own Click commands
(``opskit.commands.fabtasks``): the same options, checks, journal and exit codes.

    fab --list
    fab exec --inventory inventory/lab.yml --limit app --yes --command uptime
    fab -H root@127.10.0.2:2222 -i ~/.ssh/id_ed25519 exec --yes --command uptime
    fab deploy --inventory inventory/lab.yml --ref v2 --batch 1,50% --yes
    fab snapshot.create --inventory inventory/lab.yml --limit db2 --mount /data --yes
    fab pg.switchover --inventory inventory/lab.yml --limit db --to db2 --yes
    fab redis.promote --inventory inventory/lab.yml --limit redis --dry-run

With ``-H`` each host is reached with opskit's connection rules (known_hosts checked, never
auto-added); without it, hosts come from the inventory (``--inventory`` or
$OPSKIT_INVENTORY) and run in parallel through opskit's runner.
"""

import signal

from opskit.__main__ import quiet_interrupt

# A Ctrl-C while the commands load exits 130 without a traceback (Fabric would exit 1);
# each task's ``cli.run`` then installs opskit's own policy (``runner.interrupts``).
signal.signal(signal.SIGINT, quiet_interrupt)

from opskit.commands.fabtasks import namespace  # noqa: E402 (after the handler, on purpose)

ns = namespace()
