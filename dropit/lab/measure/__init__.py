"""Memory measured: the paper's Cache column and the frontier of memory against step time."""
