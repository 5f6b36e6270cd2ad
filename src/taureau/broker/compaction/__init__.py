"""Topic compaction: the latest message of each key, kept beside the topic for compacted reads."""
