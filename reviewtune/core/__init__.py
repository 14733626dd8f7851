"""Lambda-safe core of reviewtune: stdlib, boto3 and aws-lambda-powertools only.

Every function here takes its AWS clients as arguments, so the same code runs in Lambda, in the local runtime and in
tests; only the endpoints differ.
"""
