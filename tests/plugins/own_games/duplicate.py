"""A suite that takes the built-in name ``matrix``: registering it must fail, naming both providers."""

from __future__ import annotations

from own_games import OwnGames


class MatrixAgain(OwnGames):
    name = "matrix"
