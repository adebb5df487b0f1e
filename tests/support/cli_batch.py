"""Run several msr console entry points, one after the other, in this one Python process.

    python cli_batch.py cases.json results.json

Each case `{"name", "program", "argv", "env"}` calls `msr.cli.<program>.main` as its console script does
(`sys.argv` = the program and `argv`; msr-convert gets `argv`), with `env` added to the environment and
stdout/stderr captured; the exit status is that of the SystemExit it ends with (0 when it returns,
1 for an exception that escapes, whose traceback is captured as the console would print it).
Results: `{name: {"rc", "stdout", "stderr"}}` in results.json.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import logging
import os
import sys
import traceback


def drop_log_handlers() -> None:
    """Remove and close the root logger's handlers (those a Hydra run configured: its console and run log)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()


def run_case(program: str, argv: list[str], env: dict[str, str]) -> dict:
    """Run one entry point; return its exit status and output. The process's logging is left as a new
    process starts (no root handlers), before and after: a case's run log is not written to by what runs
    next."""
    drop_log_handlers()
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    out, err = io.StringIO(), io.StringIO()
    module = importlib.import_module(f"msr.cli.{program}")
    sys.argv = [f"msr-{program}", *argv]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            returned = module.main(argv) if program == "convert" else module.main()
            rc = returned if isinstance(returned, int) else 0
        except SystemExit as exit_:
            rc = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        except Exception:
            traceback.print_exc()
            rc = 1
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    drop_log_handlers()
    return {"rc": rc, "stdout": out.getvalue(), "stderr": err.getvalue()}


def main() -> None:
    """Run the cases of argv[1]; write the results to argv[2]."""
    spec, out = sys.argv[1], sys.argv[2]  # run_case changes sys.argv
    with open(spec) as f:
        cases = json.load(f)
    results = {c["name"]: run_case(c["program"], c["argv"], c.get("env", {})) for c in cases}
    with open(out, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main()
