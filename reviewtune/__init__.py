"""reviewtune: tune a review-sentiment classifier with SageMaker Automatic Model Tuning.

Importing this package is cheap on purpose: the Lambda functions import ``reviewtune.core`` only.
"""

__version__ = "0.1.0"
