"""Helpers of bench/bench_dicom.py: corpus, synthetic index, timing and memory."""
