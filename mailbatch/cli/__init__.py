"""The command line: argument parsing, printing, check and preview, progress, init.

May import: any layer; nothing imports it but ``mailbatch.__main__``.
"""
