"""Extractors: versioned specs plus code that turns images into features.

Built in: ``yolo_detector`` (ultralytics, per-detection embeddings) and the optional
``clip_embedder``. Custom extractors load from a folder or zip (see ``base.py`` for the
interface and ``workbench.registry.ModelRegistry.register_custom``).
"""
