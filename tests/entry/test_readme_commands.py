"""Every msr-train, msr-eval and msr-predict command of README.md, experiments/README.md and the study notes
(experiments/studies/*.md) composes through the real entry point, and every msr-aggregate command parses.

The README promises that its commands work as written. Each one (its code blocks, with `\\` continuations
joined, and its inline `msr-...` and `make train ARGS=...` spans) runs here as its program with `--cfg job`:
Hydra composes the whole config, the hydra node included (launchers, sweepers, run folders), and prints it
instead of running the job, so a renamed group, choice or key fails. A multirun's sweeps are expanded: every
choice of every swept key is composed once, the other keys at their first value (the studies' own sweeper
parameters are composed by test_studies.py). Paths and placeholders (`/datasets/coco`, `<run>`) are not
checked: nothing runs.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from support.cli import run_batch

from msr.cli.aggregate import build_parser

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
EXPERIMENTS_README = ROOT / "experiments" / "README.md"
#: The dated history of each study, one note per study, which records the commands its runs used.
STUDY_NOTES = sorted((ROOT / "experiments" / "studies").glob("*.md"))
PROGRAMS = {"msr-train": "train", "msr-eval": "evaluate", "msr-predict": "predict"}
MULTIRUN_FLAGS = {"-m", "--multirun"}


def code_block_lines(text: str) -> list[str]:
    """Return the lines of the bash code blocks of `text`, `\\` continuations joined, comments dropped, and
    shell variables set earlier in the file (`S="..."; R=...`, a `for s in 0 1 2` loop's first value)
    written out: experiments/README.md records its runs so."""
    variables: dict[str, str] = {}
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            loop = re.match(r"for (\w+) in (\S+)", line)
            if loop:
                variables[loop.group(1)] = loop.group(2)
            assignment = re.compile(r'([A-Z_]+)=(?:"([^"]*)"|(\S+))')
            assignments = [assignment.fullmatch(part.strip()) for part in line.split(";")]
            if line and all(assignments):
                variables.update({m.group(1): m.group(2) or m.group(3) or "" for m in assignments})
                continue
            line = re.sub(r"\$\{?(\w+)\}?", lambda m: variables.get(m.group(1), m.group(0)), line)
            lines.append(line.split("; do ", 1)[-1])
    return [line for line in lines if line]


def readme_commands(text: str) -> list[str]:
    """Return the README's msr-train/eval/predict command lines (code blocks, then inline spans), with
    `make train ARGS="..."` written as the msr-train command it runs and torchrun's module as its program."""
    lines = []
    for line in code_block_lines(text):
        line = re.sub(r"^torchrun .*?-m msr\.cli\.train", "msr-train", line)
        if line.split(" ", 1)[0] in PROGRAMS:
            lines.append(line)
    lines += re.findall(r"`((?:msr-train|msr-eval|msr-predict) [^`]+)`", text)
    for args in re.findall(r'`make train ARGS="([^"]*)"`', text):
        lines.append(f"msr-train experiment=quickstart {args}")
    return lines


def sweep_values(overrides: list[str]) -> list[tuple[str, list[str]]]:
    """Return (key, values) for every override, a swept one (`a=x,y`) with all its values (a swept number
    with its first only: the key is what can be wrong)."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    out = []
    for override, text in zip(parsed, overrides):
        if override.is_sweep_override():
            key = text.split("=", 1)[0]
            values = list(override.sweep_string_iterator())
            if all(re.fullmatch(r"-?[\d.]+", v) for v in values):  # numbers: the key's check is one value
                values = values[:1]
            out.append((key, [f"{key}={v}" for v in values]))
        else:
            out.append((text, [text]))
    return out


def expanded(overrides: list[str]) -> list[list[str]]:
    """Return the single-run override lists that cover every value of every swept key once."""
    keys = sweep_values(overrides)
    first = [values[0] for _, values in keys]
    runs = [first]
    for i, (_, values) in enumerate(keys):
        runs += [[*first[:i], value, *first[i + 1 :]] for value in values[1:]]
    return runs


def cases_of(command: str) -> list[dict]:
    """Return the run_batch cases (`--cfg job`, sweeps expanded) of one README command."""
    words = shlex.split(re.sub(r"<[^<>]*>", "placeholder", command))  # `<run>` is the user's to fill in
    program = PROGRAMS[words[0]]
    overrides = [w for w in words[1:] if w not in MULTIRUN_FLAGS and w != "..." and not w.startswith("--")]
    flags = [w for w in words[1:] if w.startswith("--") and w not in MULTIRUN_FLAGS]
    if flags and flags != ["--cfg"] and flags != ["--help"]:
        raise AssertionError(f"README command with flags this test does not know: {command}")
    if flags == ["--help"]:
        return [{"name": command, "program": program, "argv": ["--help"]}]
    overrides = [w for w in overrides if w not in ("job", "hydra", "all")]  # the value of --cfg
    return [
        {"name": f"{command} -> {' '.join(run)}", "program": program, "argv": ["--cfg", "job", *run]}
        for run in expanded(overrides)
    ]


def test_readme_lists_the_commands_this_test_checks() -> None:
    commands = readme_commands(README.read_text())
    assert len(commands) >= 30, commands
    assert "msr-train experiment=quickstart head=maskiou_mask_only" in commands
    assert any(c.startswith("msr-train trainer=ddp trainer.devices=8") for c in commands)  # torchrun's
    assert any(c.startswith("msr-train -m hydra/launcher=slurm") and "ckpt_path=auto" in c for c in commands)
    assert "msr-train experiment=quickstart seed=1 head=none" in commands  # make train ARGS="..."


def test_sweeps_expand_to_every_choice_once() -> None:
    assert expanded(["head=maskiou,none", "logger=csv,none", "seed=0,1,2"]) == [
        ["head=maskiou", "logger=csv", "seed=0"],
        ["head=none", "logger=csv", "seed=0"],
        ["head=maskiou", "logger=none", "seed=0"],
    ]


def test_experiments_readme_commands_are_found_with_their_variables_written_out() -> None:
    assert {p.stem for p in STUDY_NOTES} >= {"mask_scoring", "input_designs", "threshold", "balloon"}
    commands = [c for path in [EXPERIMENTS_README, *STUDY_NOTES] for c in readme_commands(path.read_text())]
    assert len(commands) >= 30, commands
    assert not [c for c in commands if "$" in c]
    recorded = "protocol.head_max_epochs=2 head=maskiou model.maskiou_loss.threshold=0.75"  # $H written out
    assert any(recorded in c for c in commands)


@pytest.mark.parametrize(
    "path", [README, EXPERIMENTS_README, *STUDY_NOTES], ids=lambda p: str(p.relative_to(ROOT))
)
def test_every_msr_aggregate_command_parses(path: Path) -> None:
    lines = code_block_lines(path.read_text())
    commands = [line for line in lines if line.startswith("msr-aggregate ")]
    assert len(commands) >= (3 if path in (README, EXPERIMENTS_README) else 0)
    for command in commands:
        try:
            build_parser().parse_args(shlex.split(command)[1:])
        except SystemExit:  # argparse's way of refusing an option or a missing --out
            pytest.fail(f"msr-aggregate refuses the documented command: {command}")


@pytest.fixture(scope="module")
def composed(cli_env, tmp_path_factory) -> dict[str, dict]:
    """Return the output of every documented command's `--cfg job` runs, all in one process."""
    files = [README, EXPERIMENTS_README, *STUDY_NOTES]
    documented = [c for path in files for c in readme_commands(path.read_text())]
    commands = dict.fromkeys(documented)  # each once, in order
    cases = [case for command in commands for case in cases_of(command)]
    return run_batch(cases, cli_env, tmp_path_factory.mktemp("readme"))


def test_every_readme_command_composes(composed) -> None:
    failed = {name: r["stderr"][-800:] for name, r in composed.items() if r["rc"] != 0}
    assert not failed, "\n\n".join(f"{name}:\n{err}" for name, err in failed.items())
    for name, result in composed.items():
        if not name.endswith("--help"):
            assert isinstance(yaml.safe_load(result["stdout"]), dict), name
