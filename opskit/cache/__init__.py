"""Page-cache maps of a directory tree and warming one host's cache to match another's.

``ranges`` is page-range arithmetic, ``pagemap`` the map document and its comparisons and
warm plans (pure), ``tools`` runs the map, warm and evict helpers on the hosts.
"""
