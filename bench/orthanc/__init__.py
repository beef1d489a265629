"""Helpers of bench_vs_orthanc.py: corpus, Orthanc and gateway servers, measurements."""
