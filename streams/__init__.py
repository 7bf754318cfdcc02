"""Stream processing: counters to rates and 1-minute windows, usage to rated usage, dead letters."""
