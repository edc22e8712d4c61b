"""Modules that a dependency imports at its top but uses only in code we never run.

Great Expectations imports SciPy's statistics and Altair when it is imported, for one
expectation (KL divergence) and its chart, which no suite of ours uses. Together they
are about 100 MB of a validation task's resident memory (measured: ``scipy.stats``
65 MB, ``altair`` 34 MB, of 275 MB for the whole import), before a row is read.

:func:`defer` puts a stand-in under each name in ``sys.modules`` that imports the real
module on first attribute access and then becomes it, so a dependency's ``import
altair as alt`` or ``from scipy import stats`` succeeds at once and costs nothing until
something actually uses the module. Nothing is left out: any use loads the module, and
the result is the same as an eager import.

The stand-in carries its ``__spec__`` itself. The import system reads a module's
``__spec__`` on every ``import`` statement; :class:`importlib.util.LazyLoader` loads on
that read (every attribute access), so it would load these at GX's own import.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types

_lock = threading.RLock()


class Deferred(types.ModuleType):
    """A module not yet executed: the first attribute it lacks imports the real one."""

    def __getattr__(self, attr: str):
        # Only reached for what the stand-in itself does not hold (it holds __name__,
        # __spec__, __loader__, __file__): everything else is the real module's.
        return getattr(self._load(), attr)

    def _load(self) -> types.ModuleType:
        name = self.__name__
        with _lock:
            if sys.modules.get(name) is self:
                del sys.modules[name]
                try:
                    real = importlib.import_module(name)
                except BaseException:
                    sys.modules[name] = self  # as before: a later use tries again
                    raise
            else:
                real = importlib.import_module(name)
            # Whoever kept a reference to the stand-in now reads the real module's names.
            self.__dict__.update(real.__dict__)
        return real


def defer(*names: str) -> list[str]:
    """Registers a stand-in for each named module not yet imported; returns those names.

    A module already imported, or one that is not installed, is left alone: the first
    is already paid for, and the second fails where it is imported, as it would anyway.
    """
    deferred = []
    with _lock:
        for name in names:
            if name in sys.modules:
                continue
            parent, _, _ = name.rpartition(".")
            if parent:
                importlib.import_module(parent)  # so the spec is found where it lives
            spec = importlib.util.find_spec(name)
            if spec is None:
                continue
            stand_in = Deferred(name)
            stand_in.__spec__ = spec
            stand_in.__loader__ = spec.loader
            stand_in.__file__ = spec.origin
            sys.modules[name] = stand_in
            deferred.append(name)
    return deferred


def is_loaded(name: str) -> bool:
    """Whether a module has been executed (imported for real, not just deferred)."""
    module = sys.modules.get(name)
    return module is not None and not isinstance(module, Deferred)
