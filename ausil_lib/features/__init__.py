"""From audio to stored descriptors: the log-mel front end, the extractor, the sharded store and bulk extraction."""
