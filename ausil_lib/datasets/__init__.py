"""Where queries and databases come from: the embedded corpus and the real benchmark datasets."""
