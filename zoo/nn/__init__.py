"""Building blocks shared by several model families, written once."""
