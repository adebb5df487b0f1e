"""What the tests share: paths (support.paths), the subprocess environment (support.env), the real
programs run as subprocesses (support.cli, support.cli_batch) and tiny models (support.tiny_nets).

Importable as `support` because tests/conftest.py makes tests/ pytest's root folder for imports.
"""
