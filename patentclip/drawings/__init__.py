"""Drawings: decoding and preprocessing for the model (``preprocess``), rendering for
people (``render``), and the image store that keeps them (``imagestore``)."""
