"""``pcopy watch``: mirror SRC into DST as files change, through the same engine as sync."""
