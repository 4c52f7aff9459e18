"""Benchmarks: they only time, compare and report; the figures come from the library's own jobs.

Quality over collections, backends and retrieval methods, ANN sweeps, ingest, serve and training
speed (each against a plain baseline), ``bench compare`` of two result files, and the Markdown
report whose blocks the documentation pages carry. Measured figures are kept in ``results/``.
"""
