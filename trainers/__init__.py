"""Trainers: one shared Ray Train harness (``harness/``) and one small package per method.

A method supplies examples, a model that returns its loss terms, a collator and an export; the
harness does everything else (workers, devices, precision, accumulation, schedule, checkpoints,
resume, logging). Trainers only write checkpoints that the encoder runtime loads.
"""
