"""Feature extraction: the one home of every feature the models use, on the edge and in training.

``cloud/`` imports these functions to build training sets; the twin calls the same functions on a cell's live
history. A feature computed two ways is a bug waiting to happen (DESIGN.md, dependency rules), so nothing here
may import ``cloud/`` or anything outside the edge install (numpy only).
"""
