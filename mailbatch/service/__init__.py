"""The service layer: batches on a timetable, job files watched, the owner notified.

May import: mailbatch.batch and every layer below it.
"""
