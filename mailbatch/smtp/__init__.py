"""The SMTP layer: composed bytes reach a server over one verified session (or the dry-run outbox).

May import: mailbatch.job and mailbatch.errors.
"""
