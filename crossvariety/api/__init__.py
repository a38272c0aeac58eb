"""The PyTerrier API (crossvariety.Bm25Index, BGEM3, ...): see crossvariety/__init__.py."""
