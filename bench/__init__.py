"""chaosproxy's benchmark harness: ``python -m bench`` (``make bench``). See bench/run.py."""
