"""Plain re-implementations of the originals, one module per family: the independent references that the tests
compare speechzoo with where the fixtures do not reach, and that the benchmarks time speechzoo against."""
