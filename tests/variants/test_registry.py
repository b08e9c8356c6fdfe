"""Variant settings declared in their own modules (bertclf/swaps/registry.py): defined, recorded in config.json's
values, passed to the entries, and refused without their entry."""
from absl import flags
import pytest

from bertclf import flags as bertclf_flags
from bertclf.swaps import registry

FLAGS = flags.FLAGS


def test_every_declared_setting_is_recorded_and_passed_on():
  declared = registry.names()
  assert {"ema_decay", "rdrop_alpha", "grad_accum_steps", "lookahead_steps"} <= set(declared)
  FLAGS.unparse_flags()
  FLAGS(["train.py"])
  try:
    values, options = bertclf_flags.flag_values(), bertclf_flags.step_options()
    for name in declared:
      assert values[name] == FLAGS[name].default == options[name], name
    assert "optimizer_wrapper" in options
  finally:
    FLAGS.unparse_flags()


def test_settings_live_in_their_variants_modules():
  modules = {s.name: s.module for s in registry.settings()}
  assert modules["ema_decay"] == "bertclf.variants.ema"
  assert modules["label_smoothing"] == "bertclf.swaps.losses"
  assert not any(m == "bertclf.flags" for m in modules.values())


@pytest.mark.parametrize("setting", [s for s in registry.settings() if s.requires], ids=lambda s: s.name)
def test_a_setting_without_its_entry_is_refused(setting):
  if setting.kind == "enum":  # another of its values
    value = next(v for v in setting.kwargs["enum_values"] if v != setting.default)
  else:  # a valid value other than the default: the check alone would pass it
    cast = {"integer": int, "float": float}[setting.kind]
    value = next(v for v in map(cast, (0.25, 0.5, 2, 3)) if v != setting.default and setting.check(v))
  FLAGS.unparse_flags()
  with pytest.raises(flags.IllegalFlagValueError, match=f"--{setting.name} is read by --{setting.requires[0]}="):
    FLAGS(["train.py", f"--{setting.name}={value}"])
  FLAGS.unparse_flags()
