"""What the notebooks call: the explore bench's state, its widgets, and the quickstart's lessons.

Only :mod:`dropit.lab.notebook.widgets` imports ipywidgets; nothing here is imported by the loop.
"""
