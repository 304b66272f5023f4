"""Trainers that reproduce the originals' training recipes (one module per recipe); ``zoo.cli`` runs them."""
