"""Foundation: configuration, file formats, shared names, numerics pinning and downloads; imports nothing above it."""
