"""One copy of botocore's service models for the whole test session.

botocore caches the models it reads per session (``Loader``'s instance cache), and every ``boto3.Session`` (each
handler the tests load, each moto backend reset) starts with an empty one: the same JSON files are parsed again,
about 4 ms each, thousands of times in a session. The tests share one cache across sessions instead, keyed by the
loader's search paths and the arguments. botocore treats these models as read-only once loaded (a session hands
the same object to every client), so sharing them across sessions changes nothing the code under test can see.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from botocore import loaders

_CACHED = ("load_service_model", "load_data_with_path", "list_available_services", "determine_latest_version",
           "list_api_versions")
_shared: dict[tuple[Any, ...], Any] = {}


def _shared_cache(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def cached(self: loaders.Loader, *args: Any, **kwargs: Any) -> Any:
        key = (name, tuple(self.search_paths), args, tuple(sorted(kwargs.items())))
        if key not in _shared:
            _shared[key] = method(self, *args, **kwargs)
        return _shared[key]

    cached.__wrapped_by_tests__ = True  # type: ignore[attr-defined]
    return cached


def share_across_sessions() -> None:
    """Install the shared cache on botocore's Loader (once; idempotent)."""
    for name in _CACHED:
        method = getattr(loaders.Loader, name)
        if not getattr(method, "__wrapped_by_tests__", False):
            setattr(loaders.Loader, name, _shared_cache(name, method))
