"""A class a hostile pickle names: constructing it writes the canary file.

The reader must never import this module, let alone call Touch: a pickle that
says `tests.hostile.canary.Touch(path)` gets an inert, uncallable stand-in."""
from pathlib import Path


class Touch:
    def __init__(self, path):
        Path(path).write_text("the reader executed code from a model file\n")
