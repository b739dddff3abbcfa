"""What every holder of secret material shares: it cannot be pickled or copied by accident."""

from __future__ import annotations

from typing import NoReturn

__all__ = ["SecretHolder"]


class SecretHolder:
    """Base for objects that hold secret keys: pickling and copying raise ``TypeError``.

    The message names the deliberate way out (the subclass's ``_export`` method).
    """

    __slots__ = ()
    _export = "export_private(unprotected=True)"

    def _refuse(self) -> NoReturn:
        raise TypeError(
            f"a {type(self).__name__} cannot be pickled or copied; if you really must move "
            f"it, call {self._export} and protect the bytes yourself"
        )

    def __getstate__(self) -> NoReturn:
        self._refuse()

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        self._refuse()
