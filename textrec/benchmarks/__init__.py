"""The engine benchmarks behind ``textrec bench <name>`` (the baselines one is ``textrec.bench``).

Each module has ``add_arguments(parser)`` and ``run(args) -> int`` and writes through
``textrec.results.ResultWriter``. ``eval/*_bench.py`` are thin wrappers kept for old commands.
"""
