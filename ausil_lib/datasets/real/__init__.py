"""The real benchmarks (FIVR, SVD, VCDB, EVVE): loaders, downloads, their DVC stages and the dry-run budget."""
