"""The message layer: one recipient's data becomes the exact bytes of its message.

May import: mailbatch.job and mailbatch.errors.
"""
