"""Speed and memory benchmarks (``make bench``): ratios against references measured side by side."""
