"""Benchmarks (``make bench``); each module or package here exposes ``main(args) -> dict``."""
