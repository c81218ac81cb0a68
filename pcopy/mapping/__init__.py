"""``pcopy map``: run a function on every file of a tree, on the same bounded pool as every command."""
