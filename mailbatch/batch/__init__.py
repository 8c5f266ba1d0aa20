"""The batch layer: a whole batch exactly once: render all, journal, send, report, lock, signals.

May import: mailbatch.message, mailbatch.smtp, mailbatch.job and mailbatch.errors.
"""
