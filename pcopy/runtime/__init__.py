"""The runtime every command shares: worker processes and threads, the bounded pool, signals, progress."""
