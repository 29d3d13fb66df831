"""EBS snapshot sets of RAID mounts: create, group, list and prune."""
