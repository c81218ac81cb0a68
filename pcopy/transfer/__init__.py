"""Copy and sync: plan each SRC/DST pair, run the work on the pool, finish directories, report."""
