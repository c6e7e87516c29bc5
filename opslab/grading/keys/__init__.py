"""The answer keys: model answers and hidden cases the checks compare with.

Instructors only: the learner distribution (`opslab.dist`) leaves this package out, and the
checks then run their public cases from answers stored next to them.
"""
