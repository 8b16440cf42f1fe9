"""The stakeholder report: one self-contained HTML file with the task, the tree, the score cards against
the flat baseline, the coverage map, samples per leaf, the data sets and the dataset card.

:mod:`.collect` reads a project into the typed :mod:`.model`; :mod:`.svg` draws the charts;
:mod:`.markdown` turns the dataset card into safe HTML; :mod:`.render` writes the page.
"""
