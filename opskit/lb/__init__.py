"""The load-balancing tier: nginx on the lb hosts in front of the app hosts (docs/lb.md)."""
