"""opskit: an operations toolbox for a fleet of EC2 hosts."""

__version__ = "0.1.0"
