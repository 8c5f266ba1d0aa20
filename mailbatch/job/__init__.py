"""The job layer: a job file and the files it names become frozen, validated objects.

May import: mailbatch.errors only.
"""
