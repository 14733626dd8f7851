"""SageMaker on-demand instance prices used for cost estimates: one dated table, the only place they live.

US East (N. Virginia), USD per instance-hour, from the "On-Demand Pricing" tables of
https://aws.amazon.com/sagemaker/pricing/ (Training and Processing tabs). Prices change and differ by region:
the figures reviewtune reports from them are estimates, and the message says so with this table's date.
``AS_OF`` is the date the figures were recorded; compare them with the page and update both together.
"""

from __future__ import annotations

AS_OF = "2026-11-30"
REGION = "us-east-1"
CURRENCY = "USD"
SOURCE = "https://aws.amazon.com/sagemaker/pricing/ (On-Demand, US East (N. Virginia))"
NOTE = "estimate from on-demand list prices; taxes, storage, data transfer and discounts are not included"

TRAINING_PER_HOUR: dict[str, float] = {
    "ml.m5.large": 0.115,
    "ml.m5.xlarge": 0.23,
    "ml.m5.2xlarge": 0.461,
    "ml.m5.4xlarge": 0.922,
    "ml.c5.xlarge": 0.204,
    "ml.c5.2xlarge": 0.408,
    "ml.c5.4xlarge": 0.816,
    "ml.g4dn.xlarge": 0.736,
    "ml.g4dn.2xlarge": 1.053,
    "ml.g5.xlarge": 1.408,
    "ml.g5.2xlarge": 1.515,
    "ml.g5.4xlarge": 2.03,
    "ml.p3.2xlarge": 3.825,
}

PROCESSING_PER_HOUR: dict[str, float] = {
    "ml.m5.large": 0.115,
    "ml.m5.xlarge": 0.23,
    "ml.m5.2xlarge": 0.461,
    "ml.m5.4xlarge": 0.922,
    "ml.c5.xlarge": 0.204,
    "ml.c5.2xlarge": 0.408,
    "ml.g4dn.xlarge": 0.736,
    "ml.g5.xlarge": 1.408,
}
