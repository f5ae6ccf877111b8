"""Data sets: generated (spiral), tables and images, each read from local files with checksums."""
