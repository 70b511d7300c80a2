"""Precompute: PPM's frozen user tower run offline, its outputs cached into the examples."""
