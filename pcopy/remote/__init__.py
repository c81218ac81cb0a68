"""Remote trees over SSH: ``pcopy copy|sync SRC [user@]host:DST`` and ``[user@]host:SRC DST``."""
