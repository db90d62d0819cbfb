"""`herald bench`: Herald against a raw picows broadcaster and FastAPI + encode/broadcaster.

Ships in Herald's wheel; its dependencies are the ``bench`` extra (``pip install 'herald[bench]'``). The one
entry point is ``herald bench`` (:func:`benchmarks.run.main`); ``herald bench --help`` lists the options.
"""
