"""Streamlit-side helpers for the app (``app.py`` and ``app_pages/``): the one typed app-state object,
the graph component, shared widgets and edit callbacks.

This subpackage is the only part of ``treesynth_core`` that imports Streamlit. Pages stay thin:
they read the project through :mod:`.state`, call core functions and render the results.
"""
