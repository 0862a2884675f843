"""archiver: streams finished provider videos into permanent storage, verified.

The service lives in ``reelvault_archiver.app``. This package imports nothing itself, so
``python -m reelvault_archiver`` can install its stop handler before the slow imports.
"""
