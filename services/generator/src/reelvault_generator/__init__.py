"""The generator: VideoRequested -> one provider job, followed to VideoCompleted/VideoFailed.

The service lives in ``reelvault_generator.app``. This package imports nothing itself, so
``python -m reelvault_generator`` can install its stop handler before the slow imports.
"""
