"""llama-cpp-python's ``Llama``, with chat completions that can be stopped between tokens.

``Llama.create_chat_completion`` (0.3.x) takes no ``stopping_criteria``, although the completion it
runs underneath (``create_completion``, called by every chat format's handler) does.
:class:`StoppableLlama` hands a check to that inner call: :meth:`~StoppableLlama.chat_until` runs a
chat completion that ends after the token at which ``should_stop()`` first returns True, and says
whether it did (:attr:`~StoppableLlama.stopped`), so the caller can throw the cut-off reply away.

Imports ``llama_cpp``: import this module only where a model is loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
from llama_cpp import Llama, StoppingCriteriaList


class StoppableLlama(Llama):
    """A ``Llama`` whose chat completions :meth:`chat_until` can stop. Not thread-safe (no ``Llama``
    is): the embedded backend calls it under the model's lock."""

    _should_stop: Callable[[], bool] | None = None
    #: Whether the last :meth:`chat_until` was stopped by its check (its reply is cut off).
    stopped: bool = False

    def chat_until(self, should_stop: Callable[[], bool], **kwargs: Any) -> Any:
        """``create_chat_completion(**kwargs)``, checking ``should_stop()`` after every generated token
        and ending there once it returns True (then :attr:`stopped` is True)."""
        self._should_stop, self.stopped = should_stop, False
        try:
            return self.create_chat_completion(**kwargs)
        finally:
            self._should_stop = None

    def create_completion(self, *args: Any, **kwargs: Any) -> Any:
        should_stop = self._should_stop
        if should_stop is not None:

            def stop_here(input_ids: npt.NDArray[np.intc], logits: npt.NDArray[np.single]) -> bool:
                if should_stop():
                    self.stopped = True
                return self.stopped

            kwargs["stopping_criteria"] = StoppingCriteriaList([*(kwargs.get("stopping_criteria") or ()), stop_here])
        return super().create_completion(*args, **kwargs)
