"""What only the notebooks need: the session (figures, tables, recorded numbers, manifest), the papermill runner
(``python -m fame_utils.workbook.run``), widgets, and one module per notebook (``nbNN_topic``).

It may import every other layer; nothing outside ``workbook`` imports it.
"""
