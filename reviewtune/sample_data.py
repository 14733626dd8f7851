"""Synthetic clothing reviews that reviewtune makes itself, deterministically, in any number: what the tests train on.

Made from phrase templates (no real customer text), with a little label noise and mixed-feeling neutral reviews,
so that a tuning run on it is short but not trivial. `make run` trains on real reviews instead
(:mod:`reviewtune.real_sample`).
"""

from __future__ import annotations

import csv
import io
import random

ITEMS = ["dress", "sweater", "blouse", "jeans", "skirt", "jacket", "cardigan", "top", "coat", "jumpsuit", "tunic", "shorts"]
POSITIVE = [
    "I love this {item}, the fabric is soft and it fits perfectly",
    "Gorgeous {item}, flattering cut and the color is even better in person",
    "Great quality {item} for the price, I bought it in two colors",
    "This {item} is so comfortable and looks amazing, highly recommend",
    "Beautiful {item}, true to size and very well made",
    "Perfect {item} for work and weekends, I get compliments every time",
    "The {item} drapes nicely and washes well, very happy with it",
]
NEGATIVE = [
    "Very disappointed, the {item} fell apart after one wash",
    "The {item} runs tiny and the material feels cheap, returning it",
    "Awful fit, this {item} is boxy and unflattering on me",
    "Poor quality {item}, seams were loose and the color faded",
    "I wanted to like this {item} but it is scratchy and see-through",
    "The {item} looked nothing like the picture, sending it back",
    "Terrible {item}, the zipper broke the first time I wore it",
]
NEUTRAL = [
    "The {item} is okay, nice color but the fit is a bit off",
    "Decent {item}, fabric is fine though it wrinkles easily",
    "It's an average {item}, not bad but nothing special either",
    "The {item} is cute but runs large, I might keep it",
    "Mixed feelings about this {item}: soft material, odd length",
    "The {item} is fine for the price, the sleeves are a little long",
    "Pretty {item} but thinner than expected, it will do for summer",
]
ENDINGS = ["", ".", "!", " overall.", " I'm 5'4 and ordered a small.", " Ordered my usual size.", " Shipping was quick."]
TEMPLATES = {1: POSITIVE, -1: NEGATIVE, 0: NEUTRAL}


def sample_reviews(per_class: int = 300, seed: int = 7, noise: float = 0.04) -> list[tuple[int, str]]:
    """Balanced (sentiment, text) pairs, every text distinct; a small share of labels is swapped to a neighbouring
    class. Each class draws its texts without replacement from every (template, item, ending) combination
    (588 per class), so no review is repeated; another ``seed`` gives another selection (another file)."""
    rng = random.Random(seed)
    rows = []
    for label, templates in TEMPLATES.items():
        texts = [t.format(item=item) + ending for t in templates for item in ITEMS for ending in ENDINGS]
        if per_class > len(texts):
            raise ValueError(f"per_class is at most {len(texts)} (the distinct reviews of a class), got {per_class}")
        for text in rng.sample(texts, per_class):
            shown = label
            if rng.random() < noise:
                shown = 0 if label != 0 else rng.choice((-1, 1))
            rows.append((shown, text))
    rng.shuffle(rows)
    return rows


def sample_tsv(per_class: int = 300, seed: int = 7) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, delimiter="\t", lineterminator="\n")
    writer.writerow(("sentiment", "review_body"))
    writer.writerows(sample_reviews(per_class, seed))
    return out.getvalue().encode("utf-8")
