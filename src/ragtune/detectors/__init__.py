"""Detectors of the query and answer paths: prompt injection (``injection``: explainable rules and a classifier that
ships as a small file inside the package, trained by ``training`` on public labelled data whose source, revision and
licence are recorded in ``sources``) and claim verification by an NLI model from a local folder (``nli``).
"""
