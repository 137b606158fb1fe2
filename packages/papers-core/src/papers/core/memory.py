"""Activation memory of a backward pass, measured: the bytes autograd keeps for it.

    with SavedTensorMeter(exclude=model.parameters()) as meter:
        loss = model(x).sum()
        loss.backward()
    meter.peak   # bytes of the distinct storages saved for backward, at their largest
"""

from __future__ import annotations

from torch import Tensor
from torch.autograd.graph import saved_tensors_hooks


class SavedTensorMeter:
    """Bytes of the distinct storages autograd holds for backward: live now and peak so far.

    Every tensor saved for backward (by built-in ops, by a custom Function's ``save_for_backward``, and
    by the small graphs a backward pass builds while recomputing) is counted once per storage while
    something still holds it; storages of ``exclude`` (e.g. the parameters) are not counted.
    """

    def __init__(self, exclude=()):
        self.live = self.peak = 0
        self._refs: dict[int, list[int]] = {}
        self._exclude = {p.untyped_storage().data_ptr() for p in exclude}

    def _pack(self, x: Tensor):
        storage = x.untyped_storage()
        key = storage.data_ptr()
        if key in self._exclude:
            return x
        if key not in self._refs:
            self._refs[key] = [0, storage.nbytes()]
            self.live += storage.nbytes()
            self.peak = max(self.peak, self.live)
        self._refs[key][0] += 1
        return _Held(x, key, self)

    @staticmethod
    def _unpack(held):
        return held.tensor if isinstance(held, _Held) else held

    def _release(self, key: int) -> None:
        entry = self._refs[key]
        entry[0] -= 1
        if entry[0] == 0:
            self.live -= entry[1]
            del self._refs[key]

    def __enter__(self):
        self._hooks = saved_tensors_hooks(self._pack, self._unpack)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self._hooks.__exit__(*exc)


class _Held:
    __slots__ = ("tensor", "key", "meter")

    def __init__(self, tensor: Tensor, key: int, meter: SavedTensorMeter):
        self.tensor, self.key, self.meter = tensor, key, meter

    def __del__(self):
        self.meter._release(self.key)
