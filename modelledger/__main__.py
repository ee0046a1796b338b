"""``python -m modelledger``: the same as the ``modelledger`` console script."""

from modelledger.cli import main

main()
