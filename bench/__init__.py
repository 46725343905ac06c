"""tilenorm benchmarks: ``python -m bench.run`` times the norms, ``python -m bench.table`` renders them."""
