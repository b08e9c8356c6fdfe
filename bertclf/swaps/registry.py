"""Flags of the research variants, declared next to their code.

A variant module declares each of its settings at import time:

  registry.variant_flag("swa_every", 1, "--weights_for_eval=swa: take a snapshot every N steps.",
                        requires=("weights_for_eval", "swa"), check=lambda v: v >= 1,
                        message="--swa_every must be >= 1.")

and `bertclf.flags.define_flags()` defines them all (`define()`), after the swap-point flags they depend on.
Every declared setting then
  * is in the run's config.json and TensorBoard's config (`flags.flag_values()`),
  * reaches the table entries in their `options` dict (`flags.step_options()`),
  * is refused at a non-default value unless its entry is chosen: `requires=(swap-point flag, entry or entries)`
    (`--swa_every=5` without `--weights_for_eval=swa` is an error, not a no-op). For a comma-separated flag
    (`--optimizer_wrapper=a,b`) the entry must be one of the listed ones.
The default of a setting must leave its variant off or be the one its entry uses (it is the "neutral" value the
check above compares with). Cross-flag rules of a variant go through `variant_rule`.

Plain Python and absl: importing it loads no TensorFlow.
"""
import dataclasses
from typing import Any, Callable, Optional

from absl import flags

_KINDS = {bool: "bool", int: "integer", float: "float", str: "string"}


@dataclasses.dataclass(frozen=True)
class Setting:
  name: str
  default: Any
  help: str
  kind: str                              # bool, integer, float, string, enum, list
  requires: Optional[tuple] = None       # (owner flag, (entries...)) or None: read whatever the entries
  check: Optional[Callable] = None       # value -> bool
  message: Optional[str] = None
  module: str = ""                       # the declaring module, for --helpfull and the docs
  kwargs: dict = dataclasses.field(default_factory=dict)  # enum_values, lower_bound, ...


_SETTINGS = {}  # name -> Setting, in declaration order
_RULES = []     # (flag names, fn(dict) -> bool, message)


def variant_flag(name, default, help, requires=None, check=None,  # pylint: disable=redefined-builtin
                 message=None, kind=None, **kwargs):
  """Declares the setting `--name` of a variant (see the module docstring). `kind` defaults to the type of
  `default` (give it for a None default or an enum); kwargs go to absl's DEFINE_* (e.g. enum_values)."""
  import inspect  # pylint: disable=g-import-not-at-top
  module = inspect.currentframe().f_back.f_globals.get("__name__", "")
  if requires is not None:
    owner, entries = requires
    requires = (owner, (entries,) if isinstance(entries, str) else tuple(entries))
  setting = Setting(name, default, help, kind or _KINDS[type(default)], requires, check, message, module, kwargs)
  if name in _SETTINGS and _SETTINGS[name].module != module:
    raise ValueError(f"--{name} is declared by {_SETTINGS[name].module} and {module}.")
  _SETTINGS[name] = setting
  return setting


def variant_rule(names, fn, message):
  """A cross-flag rule of a variant: absl's multi-flag validator over `names`, registered by `define()`."""
  _RULES.append((tuple(names), fn, message))


def settings():
  """Every declared setting, in declaration order."""
  return list(_SETTINGS.values())


def names():
  return tuple(_SETTINGS)


def _readers_chosen(value, entries):
  """The owner flag's value names one of the entries; a list flag or a comma-separated one (--optimizer_wrapper)
  may name several."""
  values = value.split(",") if isinstance(value, str) else value if isinstance(value, (list, tuple)) else [value]
  return any(v in entries for v in values)


def define(flag_values=flags.FLAGS):
  """Defines every declared setting with its checks. Called once by bertclf.flags.define_flags()."""
  definers = {"bool": flags.DEFINE_bool, "integer": flags.DEFINE_integer, "float": flags.DEFINE_float,
              "string": flags.DEFINE_string, "enum": flags.DEFINE_enum, "list": flags.DEFINE_list}
  for s in _SETTINGS.values():
    definers[s.kind](name=s.name, default=s.default, help=s.help, flag_values=flag_values, **s.kwargs)
    if s.check is not None:
      flags.register_validator(s.name, s.check, message=s.message or f"--{s.name}: invalid value.",
                               flag_values=flag_values)
    if s.requires is not None:
      owner, entries = s.requires
      readers = " or ".join(f"--{owner}={entry}" for entry in entries)
      flags.register_multi_flags_validator(
          [s.name, owner], lambda d, s=s, owner=owner, entries=entries:
          d[s.name] == s.default or _readers_chosen(d[owner], entries),
          message=f"--{s.name} is read by {readers} only.", flag_values=flag_values)
  for names_, fn, message in _RULES:
    flags.register_multi_flags_validator(list(names_), fn, message=message, flag_values=flag_values)
