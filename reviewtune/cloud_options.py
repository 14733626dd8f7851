"""Documented alternatives to the stack's defaults in the cloud: template parameter overrides for ``sam deploy``.

roberta-base stays the default ``ModelName``. ``MPNET_PARAMETERS`` trains sentence-transformers/all-mpnet-base-v2
instead (12 x 768 like roberta-base, pretrained as a sentence encoder): mean pooling, the model's learning-rate range
for full fine-tuning and larger batches on a GPU. The README quotes :func:`parameter_overrides` of it.
"""

from __future__ import annotations

import json

from reviewtune.budget import MPNET_MODEL, MPNET_POOLING

# Full fine-tuning on a GPU with batch 32 | 64 (the local budget freezes the embeddings and the bottom 9 layers,
# which wants a higher rate: reviewtune.budget.MPNET_LEARNING_RATE).
CLOUD_MPNET_LEARNING_RATE = {"min": 2e-5, "max": 8e-5, "scaling": "Logarithmic"}

MPNET_GPU_BATCH_SIZES = [32, 64]

MPNET_PARAMETERS: dict[str, str] = {
    "ModelName": MPNET_MODEL,
    "HyperparameterRanges": json.dumps(
        {"learning_rate": dict(CLOUD_MPNET_LEARNING_RATE), "train_batch_size": MPNET_GPU_BATCH_SIZES}
    ),
    "StaticHyperparameters": json.dumps({"pooling": MPNET_POOLING}),
}


def parameter_overrides(parameters: dict[str, str]) -> str:
    """``sam deploy --parameter-overrides`` text: ``Key='value'`` pairs (the JSON values hold no single quote)."""
    return " ".join(f"{key}='{value}'" for key, value in parameters.items())
