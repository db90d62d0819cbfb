"""`herald bench`: Herald against a raw picows broadcaster and FastAPI + encode/broadcaster.

Entry point: :func:`benchmarks.run.main` (also ``python -m benchmarks.run``).
"""
