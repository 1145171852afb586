"""Reproducible studies: each module runs real training through validate and writes a report."""
