"""The modules behind scripts/bench: common (timing, checking), trees (builders), the rows
(copyrows, treerows, costrows), sshfs + delayproxy (the network row), report and svg (output)."""
