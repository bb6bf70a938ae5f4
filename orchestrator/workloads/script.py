"""A training script as the workload: ``workload: {script: train.py, ...}`` in the study file.

Each trial runs the script once, as a subprocess of its Ray worker
(:mod:`orchestrator.trial.script_process`), with the configuration as command-line flags (named
by :attr:`ScriptWorkload.flags`), as ``STEPSIZE_PARAM_<NAME>`` environment variables and as a JSON
file; the script reports each epoch through :mod:`orchestrator.integrations.script`. This module
holds the settings and how a configuration becomes the script's command line.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from orchestrator.errors import SpecError
from orchestrator.keys import ScriptEnv

#: The study file's ``workload:`` mapping keys.
SCRIPT_FIELDS = ("script", "command", "args", "flags", "flag_style", "pass_flags", "cwd", "python", "stop_grace_s")
#: What stepsize can pass besides the searched values, when ``flags`` names them.
TRIAL_VALUES = ("max_epochs", "seed", "trial_number", "device", "checkpoint_dir", "resume_dir")
FLAG_STYLES = ("underscore", "dash")


@dataclass(frozen=True)
class ScriptWorkload:
    """How to run a trial's training script.

    Attributes:
        script: the Python script (an absolute path on every node), run with ``python``.
        command: instead of ``script``, the command to run (a list: program and arguments).
        args: fixed arguments, placed before the trial's flags.
        flags: search-space name (or one of :data:`TRIAL_VALUES`) -> its flag, ``None`` to not pass
            that name; a searched name not listed gets ``--<name>`` (``flag_style``).
        flag_style: ``underscore`` (``--learning_rate``) or ``dash`` (``--learning-rate``).
        pass_flags: False passes no flags (the script reads the environment or the JSON file).
        cwd: the folder the script runs in (default the study file's folder).
        python: the interpreter for ``script`` (default the Ray worker's own Python).
        stop_grace_s: seconds between SIGTERM and SIGKILL when a trial is stopped.
    """

    script: str | None = None
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    flags: Mapping[str, str | None] = field(default_factory=dict)
    flag_style: str = "underscore"
    pass_flags: bool = True
    cwd: str | None = None
    python: str | None = None
    stop_grace_s: float = 5.0

    def __str__(self) -> str:
        return f"script {self.script}" if self.script else "command " + " ".join(self.command)

    def __call__(self, config: dict[str, Any], trial: Any) -> None:
        """Run the script for one trial (the workload contract ``fn(config, trial)``)."""
        from orchestrator.trial.script_process import run_script

        run_script(self, config, trial)

    def program(self) -> list[str]:
        """The command without the trial's flags."""
        if self.script:
            return [self.python or sys.executable, "-u", self.script, *self.args]
        return [*self.command, *self.args]

    def argv(self, config: Mapping[str, Any], trial_values: Mapping[str, Any]) -> list[str]:
        """The full command line for one trial: :meth:`program` and the flags."""
        line = self.program()
        if not self.pass_flags:
            return line
        for name, value in config.items():
            flag = self.flags.get(name, self._default_flag(name))
            if flag is not None and value is not None:
                line += [flag, flag_value(value)]
        for name in TRIAL_VALUES:
            flag = self.flags.get(name)
            if flag is not None and trial_values.get(name) is not None:
                line += [flag, flag_value(trial_values[name])]
        return line

    def parameter_environment(self, config: Mapping[str, Any]) -> dict[str, str]:
        """``STEPSIZE_PARAM_<NAME>`` variables for the configuration's values (None left out)."""
        return {ScriptEnv.PARAM_PREFIX + name.upper(): flag_value(value) for name, value in config.items()
                if value is not None}

    def _default_flag(self, name: str) -> str:
        return "--" + (name.replace("_", "-") if self.flag_style == "dash" else name)

    def to_dict(self) -> dict[str, Any]:
        """The study file's mapping (paths absolute), read back by :func:`parse_script_workload`."""
        data: dict[str, Any] = {"script": self.script} if self.script else {"command": list(self.command)}
        data.update(args=list(self.args), flags=dict(self.flags), flag_style=self.flag_style,
                    pass_flags=self.pass_flags, cwd=self.cwd, python=self.python, stop_grace_s=self.stop_grace_s)
        return data

    def check_on_this_machine(self) -> None:
        """:class:`SpecError` when the script (or the command's program) is not here."""
        if self.script and not os.path.isfile(self.script):
            raise SpecError("workload.script", self.script, "the path of an existing Python script")
        if self.cwd and not os.path.isdir(self.cwd):
            raise SpecError("workload.cwd", self.cwd, "an existing folder")


def flag_value(value: Any) -> str:
    """A configuration value as a command-line argument: ``true``/``false`` for booleans, the
    shortest exact text for numbers."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def parse_script_workload(value: Mapping[str, Any], base_dir: str | os.PathLike[str] | None,
                          names: tuple[str, ...]) -> ScriptWorkload:
    """Validate the study file's ``workload:`` mapping; relative paths are taken from
    ``base_dir`` (the study file's folder; default the current folder). ``names`` are the
    search space's names (``flags`` may name only those and :data:`TRIAL_VALUES`)."""
    unknown = sorted(str(key) for key in value if key not in SCRIPT_FIELDS)
    if unknown:
        raise SpecError(f"workload.{unknown[0]}", value[unknown[0]], f"one of the fields {', '.join(SCRIPT_FIELDS)}")
    base = Path(base_dir or ".").resolve()
    script, command = value.get("script"), value.get("command")
    if (script is None) == (command is None):
        raise SpecError("workload", dict(value), "a mapping with exactly one of `script: train.py` (a Python "
                        "script) or `command: [program, arg, ...]`")
    if script is not None:
        if not isinstance(script, str) or not script.strip():
            raise SpecError("workload.script", script, "the path of a Python script")
        script = str((base / os.path.expanduser(script)).resolve())
        if not os.path.isfile(script):
            raise SpecError("workload.script", value["script"], "the path of an existing Python script (a relative "
                            f"path is taken from the study file's folder, {base})")
    else:
        command = _strings("workload.command", command)
        if not command:
            raise SpecError("workload.command", value["command"], "a non-empty list: the program and its arguments")
    flags = value.get("flags") or {}
    if not isinstance(flags, Mapping):
        raise SpecError("workload.flags", flags, "a mapping of search-space names to flags, e.g. {learning_rate: --lr}")
    for name, flag in flags.items():
        if name not in names and name not in TRIAL_VALUES:
            raise SpecError(f"workload.flags.{name}", flag, "a name of the search space (" + ", ".join(names)
                            + ") or one of " + ", ".join(TRIAL_VALUES))
        if flag is not None and (not isinstance(flag, str) or not flag.startswith("-") or " " in flag):
            raise SpecError(f"workload.flags.{name}", flag, "a flag such as --lr, or null to not pass it")
    style = value.get("flag_style", "underscore")
    if style not in FLAG_STYLES:
        raise SpecError("workload.flag_style", style, " or ".join(FLAG_STYLES))
    pass_flags = value.get("pass_flags", True)
    if not isinstance(pass_flags, bool):
        raise SpecError("workload.pass_flags", pass_flags, "true or false")
    cwd = value.get("cwd")
    if cwd is None:
        cwd = os.path.dirname(script) if script else str(base)
    elif isinstance(cwd, str):
        cwd = str((base / os.path.expanduser(cwd)).resolve())
    else:
        raise SpecError("workload.cwd", cwd, "a folder (relative to the study file's folder)")
    python = value.get("python")
    if python is not None and (not isinstance(python, str) or not python.strip()):
        raise SpecError("workload.python", python, "the path or name of a Python interpreter")
    grace = value.get("stop_grace_s", 5.0)
    if isinstance(grace, bool) or not isinstance(grace, (int, float)) or not math.isfinite(grace) or not 0 <= grace <= 600:
        raise SpecError("workload.stop_grace_s", grace, "seconds from 0 to 600")
    workload = ScriptWorkload(script=script, command=tuple(command or ()),
                              args=tuple(_strings("workload.args", value.get("args") or [])), flags=dict(flags),
                              flag_style=style, pass_flags=pass_flags, cwd=cwd, python=python,
                              stop_grace_s=float(grace))
    workload.check_on_this_machine()
    return workload


def _strings(where: str, items: Any) -> list[str]:
    if not isinstance(items, list) or not all(isinstance(i, (str, int, float)) and not isinstance(i, bool)
                                              for i in items):
        raise SpecError(where, items, "a list of strings (numbers are passed as written)")
    return [str(item) for item in items]
