"""Notebooks → reports: papermill execution, self-contained nbconvert HTML, report runs."""
