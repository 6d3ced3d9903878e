"""The benchmarks: speed, memory and headroom, each a script with a ``--quick`` smoke mode.

splitexit bench                   # lists them
splitexit bench env_step --quick  # runs one (python -m splitexit.benchmarks.bench_env_step)
"""
