"""The model: the encoder (``encoder``), its inference backends (``backends``) and the
registry of checkpoints and their reports (``registry``)."""
