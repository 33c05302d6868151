"""Unpickling downloaded weights without running code: plain numeric NumPy arrays in dicts, nothing else.

A pickled NumPy array names three globals (`numpy.core.multiarray._reconstruct`, `numpy.ndarray`,
`numpy.dtype`) and, in protocol 2, `_codecs.encode` for its bytes. Handing a hostile file's arguments
to NumPy's own `__setstate__` is unsafe (a crafted dtype state can make NumPy read raw bytes as object
pointers), so those globals are stand-ins that only record what they are given; each array is then
built here with `np.frombuffer` from a plain numeric dtype, its byte count checked against its shape.
"""
from __future__ import annotations

import codecs
import collections
import pickle

import numpy as np

from svsgan_tf.errors import ConfigError

# dtype codes an array of weights may have: no objects, strings, records or sub-arrays
NUMERIC_DTYPES = frozenset({"f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "b1"})


class _DtypeStub:
    """What `numpy.dtype(code, align, copy)` and its state say, unchecked until `to_dtype`."""

    def __init__(self, code=None, *args):
        self.code, self.state = code, None

    def __setstate__(self, state):
        self.state = state

    def to_dtype(self, source: str) -> np.dtype:
        order = self.state[1] if isinstance(self.state, tuple) and len(self.state) > 1 else "="
        if not isinstance(self.code, str) or self.code not in NUMERIC_DTYPES or order not in ("<", ">", "|", "="):
            raise ConfigError(f"{source}: an array of dtype {self.code!r} (byte order {order!r}); only plain "
                              f"numeric arrays are loaded from downloaded weights")
        return np.dtype(self.code).newbyteorder(order if order != "|" else "=")


class _ArrayStub:
    """What `_reconstruct(ndarray, shape, typecode)` and its state (version, shape, dtype, fortran, data) say."""

    def __init__(self, *args):
        self.state = None

    def __setstate__(self, state):
        self.state = state

    def to_array(self, source: str) -> np.ndarray:
        state = self.state
        if not (isinstance(state, tuple) and len(state) == 5):
            raise ConfigError(f"{source}: an array pickled in an unknown layout")
        _, shape, dtype, fortran, data = state
        if not (isinstance(shape, tuple) and all(isinstance(n, int) and n >= 0 for n in shape)
                and isinstance(dtype, _DtypeStub) and isinstance(data, (bytes, bytearray))):
            raise ConfigError(f"{source}: an array whose shape, dtype or data is not plain")
        dtype = dtype.to_dtype(source)
        if len(data) != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
            raise ConfigError(f"{source}: an array of shape {shape} whose data holds {len(data)} bytes")
        return np.frombuffer(bytes(data), dtype).reshape(shape, order="F" if fortran else "C").copy()


# the globals a pickled dict of NumPy arrays needs, each mapped to what it is allowed to build
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _ArrayStub,
    ("numpy._core.multiarray", "_reconstruct"): _ArrayStub,
    ("numpy", "ndarray"): _ArrayStub,
    ("numpy", "dtype"): _DtypeStub,
    ("_codecs", "encode"): codecs.encode,          # protocol 2 keeps bytes as encode(str, "latin1")
    ("collections", "OrderedDict"): collections.OrderedDict,
}


class NumpyUnpickler(pickle.Unpickler):
    """A pickle.Unpickler that builds only the stand-ins above, dicts, lists and plain values; any other
    global (os.system, builtins.eval, torch's storages) is refused with a ConfigError naming `source`."""

    def __init__(self, file, source: str):
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED_GLOBALS:
            raise ConfigError(f"{self.source}: the pickle asks for {module}.{name}; only NumPy arrays are "
                              f"loaded from downloaded weights, so it is refused")
        return ALLOWED_GLOBALS[module, name]

    def persistent_load(self, pid):
        raise ConfigError(f"{self.source}: the pickle refers to external storage ({str(pid)[:40]}...), as "
                          f"torch tensors do; only pickled NumPy arrays are supported")


def load_numpy_pickle(file, source: str) -> dict[str, np.ndarray]:
    """Unpickle `file` (a binary file object) with NumpyUnpickler into {name: array}; anything else,
    or damaged data, is a ConfigError naming `source`."""
    try:
        loaded = NumpyUnpickler(file, source).load()
    except ConfigError:
        raise
    except Exception as err:                       # a truncated or damaged pickle raises many kinds
        raise ConfigError(f"{source}: not a readable pickle of NumPy arrays ({type(err).__name__}: {err})") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{source}: not a dict of NumPy arrays")
    arrays = {}
    for name, value in dict.items(loaded):         # dict's own items: an attribute cannot shadow them
        if not isinstance(name, str) or not isinstance(value, _ArrayStub):
            raise ConfigError(f"{source}: not a dict of NumPy arrays ({str(name)[:40]!r})")
        arrays[name] = value.to_array(f"{source}: {name}")
    return arrays
