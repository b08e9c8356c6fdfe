"""Which variables train: a swap point (--freeze). Frozen variables get no gradient and no update."""
import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads)


def train_all(model, options):
  del options
  return list(model.trainable_variables)


FREEZE = {"none": train_all}


def trainable_variables(model, name, options=None):
  return FREEZE[name](model, options or {})
