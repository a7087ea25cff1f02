"""The composition root: the only package that knows every job's settings section.

``bridge.settings`` puts the sections of the enabled jobs (``BRIDGE_JOBS``) together;
``bridge.jobs`` reads which jobs are enabled, cheaply enough for ``function_app.py``.
"""
