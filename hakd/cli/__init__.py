"""The ``hakd`` command line.

    hakd models                                        list the zoo (hakd.cli.train: models, train, distill)
    hakd train resnet20 --data fashion-mnist --epochs 1 --out runs/r20
    hakd groups | profile | staircase | export | table ...  (hakd.cli.cost)
    hakd prune | staircases | snap ...                      (hakd.cli.prune)
    hakd optimize | diagnose ...                            (hakd.cli.optimize)
"""

from hakd.cli.app import build_parser, main

__all__ = ["main", "build_parser"]
