"""Learned detectors of the query path: prompt injection (``injection``) and unsupported answers (``hallucination``).

Each ships as a small file inside the package, trained by a script in this package on public labelled data whose
source, revision and licence are recorded beside it (``sources.py``), and loads offline.
"""
