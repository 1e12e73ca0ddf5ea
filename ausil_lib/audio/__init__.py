"""Audio in: decoding any container through ffmpeg, and the transformations that make near-duplicates."""
