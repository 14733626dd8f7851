"""Where a local run's trials will load ``--model NAME`` from, checked before the run starts.

The trials resolve the name as training_code/modeling.py's ``resolve_model_path`` does: a folder, an installed
package that carries a model (``get_model_path()`` or ``MODEL_DIR``), one of reviewtune's offline models, else a
Hugging Face Hub id. A name none of these can serve used to fail both trials about a minute into the run; here it is
refused at once, with what was tried.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

from reviewtune import offline_models
from reviewtune.budget import MINILM_MODEL

HUB_TIMEOUT_S = 10.0
OFFLINE_HERE = (MINILM_MODEL, *offline_models.MODELS)  # the names a local run can always load


class ModelUnavailable(Exception):
    """No trial could load the model; the message says what was tried."""


def _package_folder(name: str) -> Path | None:
    module_name = name.replace("-", "_")
    if not module_name.isidentifier() or importlib.util.find_spec(module_name) is None:
        return None
    module = importlib.import_module(module_name)
    getter = getattr(module, "get_model_path", None)
    folder = getter() if callable(getter) else getattr(module, "MODEL_DIR", None)
    return Path(folder) if folder is not None and Path(folder).is_dir() else None


def _hub(name: str, endpoint: str | None, cache_dir: Path | None) -> str:
    from huggingface_hub import HfApi, try_to_load_from_cache
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, RepositoryNotFoundError

    tried = f"not a model folder, an installed model package or an offline model ({', '.join(OFFLINE_HERE)})"
    try:
        cached = try_to_load_from_cache(name, "config.json", cache_dir=cache_dir)
    except HFValidationError:
        raise ModelUnavailable(f"{tried}, and not a Hugging Face Hub id") from None
    if isinstance(cached, str):
        return f"the Hugging Face cache ({Path(cached).parent})"
    if offline_models.hub_offline():
        raise ModelUnavailable(f"{tried}, not in the Hugging Face cache, and the Hub is switched off "
                               f"(HF_HUB_OFFLINE)")
    try:
        HfApi(endpoint=endpoint).model_info(name, timeout=HUB_TIMEOUT_S)
    except RepositoryNotFoundError:
        raise ModelUnavailable(f"{tried}, and the Hugging Face Hub has no such model") from None
    except HfHubHTTPError as error:
        first_line = str(error).splitlines()[0]
        raise ModelUnavailable(f"{tried}, and the Hugging Face Hub answered: {first_line}") from None
    except Exception as error:  # noqa: BLE001 - the Hub client's transport errors (httpx, OSError) vary by version
        raise ModelUnavailable(f"{tried}, not in the Hugging Face cache, and the Hub cannot be "
                               f"reached ({type(error).__name__}: {error})") from None
    return "the Hugging Face Hub (each trial downloads it)"


def describe(name: str, hub_endpoint: str | None = None, hub_cache: Path | None = None) -> str:
    """Where the trials will load ``name`` from, in words; :class:`ModelUnavailable` where nothing can serve it.
    ``hub_endpoint`` / ``hub_cache``: the Hugging Face Hub and cache to ask (default: huggingface_hub's own)."""
    text = name.strip()
    if not text:
        raise ModelUnavailable("an empty name")
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelUnavailable(f"the folder {path} has no config.json (not a Hugging Face model "
                                   f"folder)")
        return f"the folder {path}"
    if path.exists():
        raise ModelUnavailable(f"{path} is a file; give a model folder or a model name")
    folder = _package_folder(text)
    if folder is not None:
        return f"the installed package {text} ({folder})"
    model = offline_models.lookup(text)
    if model is not None:
        try:
            cached = offline_models.resolve(text)
        except offline_models.OfflineModelError as error:
            raise ModelUnavailable(str(error)) from None
        if cached is not None:
            return f"the offline model cache ({cached})"
        raise ModelUnavailable(f"not fetched yet; `make setup` (or `python -m "
                               f"reviewtune.offline_models fetch {model.name}`) fetches it once")
    return _hub(text, hub_endpoint, hub_cache)
