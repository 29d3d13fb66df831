"""Redis master/replica operations without Sentinel: status, promote, switchover, rejoin,
backups from replicas.

``config`` reads the inventory, ``cli`` runs redis-cli on the hosts, ``info`` parses INFO,
``state`` gathers every instance, ``checks`` decides (Sentinel's candidate order, refusals,
warnings), ``actions`` are the steps, and the runbooks live in ``promote``, ``switchover``,
``rejoin`` and ``backup``.
"""
