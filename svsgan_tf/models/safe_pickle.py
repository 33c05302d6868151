"""Unpickling downloaded weights without running code: only NumPy arrays (and what they are built from)."""
from __future__ import annotations

import pickle

from svsgan_tf.errors import ConfigError

# what a pickled dict of NumPy arrays needs, and nothing else (protocol 2 keeps bytes via _codecs.encode)
ALLOWED_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"), ("collections", "OrderedDict"),
})


class NumpyUnpickler(pickle.Unpickler):
    """A pickle.Unpickler that builds only NumPy arrays, dicts, lists and plain values; any other global
    (os.system, builtins.eval, torch's storages) is refused with a ConfigError naming `source`."""

    def __init__(self, file, source: str):
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED_GLOBALS:
            raise ConfigError(f"{self.source}: the pickle asks for {module}.{name}; only NumPy arrays are "
                              f"loaded from downloaded weights, so it is refused")
        return super().find_class(module, name)

    def persistent_load(self, pid):
        raise ConfigError(f"{self.source}: the pickle refers to external storage ({str(pid)[:40]}...), as "
                          f"torch tensors do; only pickled NumPy arrays are supported")


def load_numpy_pickle(file, source: str):
    """Unpickle `file` (a binary file object) with NumpyUnpickler; damaged data is a ConfigError."""
    try:
        return NumpyUnpickler(file, source).load()
    except ConfigError:
        raise
    except Exception as err:                       # a truncated or damaged pickle raises many kinds
        raise ConfigError(f"{source}: not a readable pickle of NumPy arrays ({type(err).__name__}: {err})") from None
