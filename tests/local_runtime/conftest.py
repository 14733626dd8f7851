"""A small SAM application written by the tests, and a moto server to deploy it into."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from reviewtune.local.moto_server import MotoServer
from reviewtune.local.runtime import FAKE_CREDENTIALS, MOTO_SERVICES, endpoint_variable

REGION = "us-east-1"

TEMPLATE = """\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  Greeting:
    Type: String
    Default: hello
  MaxJobs:
    Type: Number
    Default: 4
    MinValue: 1
  Strategy:
    Type: String
    Default: Bayesian
    AllowedValues: [Random, Bayesian]
Conditions:
  ManyJobs: !Equals [!Ref MaxJobs, 8]
Globals:
  Function:
    Runtime: python3.11
    Handler: app.handler
    Timeout: 20
    Layers:
      - !Ref SharedLayer
    Environment:
      Variables:
        TABLE_NAME: !Ref EventsTable
        BUCKET_NAME: !Ref DataBucket
Resources:
  SharedLayer:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: layers/shared/
  DataBucket:
    Type: AWS::S3::Bucket
    Properties:
      NotificationConfiguration:
        EventBridgeConfiguration:
          EventBridgeEnabled: true
  EventsTable:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions:
        - {AttributeName: key, AttributeType: S}
      KeySchema:
        - {AttributeName: key, KeyType: HASH}
  Topic:
    Type: AWS::SNS::Topic
  FailedEvents:
    Type: AWS::SQS::Queue
  RecorderFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/recorder/
      MemorySize: 512
      Policies:
        - DynamoDBCrudPolicy: {TableName: !Ref EventsTable}
      Environment:
        Variables:
          GREETING: !Sub "${Greeting}-${AWS::Region}"
          TOPIC_ARN: !Ref Topic
          SIZE: !If [ManyJobs, many, few]
      Events:
        Dropped:
          Type: EventBridgeRule
          Properties:
            Pattern:
              source: [aws.s3]
              detail-type: [Object Created]
              detail:
                bucket: {name: [!Ref DataBucket]}
                object: {key: [{prefix: incoming/}]}
  FailingFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/failing/
      Timeout: 10
      Events:
        Broken:
          Type: EventBridgeRule
          Properties:
            Pattern:
              source: [aws.s3]
              detail-type: [Object Created]
              detail:
                object: {key: [{prefix: broken/}]}
            DeadLetterConfig:
              Arn: !GetAtt FailedEvents.Arn
            RetryPolicy:
              MaximumRetryAttempts: 4
  RecorderLogGroup:
    Type: AWS::Logs::LogGroup
    Properties:
      LogGroupName: !Sub "/aws/lambda/${RecorderFunction}"
Outputs:
  DataBucketName:
    Value: !Ref DataBucket
  EventsTableName:
    Value: !Ref EventsTable
  TopicArn:
    Value: !Ref Topic
  FailedEventsUrl:
    Value: !Ref FailedEvents
  RecorderFunctionArn:
    Value: !GetAtt RecorderFunction.Arn
"""

RECORDER = """\
import json
import os

import boto3
from shared_helper import TAG


def handler(event, context):
    key = event["detail"]["object"]["key"]
    print(f"recording {key}")  # goes to the log, never into the result
    boto3.resource("dynamodb").Table(os.environ["TABLE_NAME"]).put_item(
        Item={
            "key": key,
            "event": json.dumps(event),
            "layer": TAG,
            "function_name": context.function_name,
            "greeting": os.environ["GREETING"],
        }
    )
    return {"recorded": key}
"""

FAILING = """\
def handler(event, context):
    raise RuntimeError("this handler always fails")
"""


@pytest.fixture(scope="session")
def sam_app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of a SAM application: template.yaml, two functions and a layer. Returns the template path."""
    root = tmp_path_factory.mktemp("sam_app")
    files = {
        "template.yaml": TEMPLATE,
        "functions/recorder/app.py": RECORDER,
        "functions/failing/app.py": FAILING,
        "layers/shared/shared_helper.py": 'TAG = "from-layer"\n',
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))
    return root / "template.yaml"


@pytest.fixture(scope="module")
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def moto_url(moto_server: MotoServer) -> str:
    """A moto server with no resources."""
    moto_server.reset()
    assert moto_server.url is not None
    return moto_server.url


def make_clients(url: str) -> Callable[[str], Any]:
    def client(service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=url,
            region_name=REGION,
            aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    return client


def handler_environment(url: str) -> dict[str, str]:
    """What the runtime gives every handler: the endpoints, fake credentials and the region."""
    variables = {endpoint_variable(service): url for service in MOTO_SERVICES}
    variables.update(FAKE_CREDENTIALS)
    variables.update({"AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION})
    return variables


class FakeSageMaker:
    """Stands in for the local SageMaker service: an HTTP server that only listens (tests of the runtime)."""

    instances: list[FakeSageMaker] = []

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.server: Any = None
        self.stopped = False
        FakeSageMaker.instances.append(self)

    def start(self, host: str, port: int) -> str:
        import http.server
        import threading

        self.server = http.server.ThreadingHTTPServer((host, port), http.server.BaseHTTPRequestHandler)
        threading.Thread(target=self.server.serve_forever, name="fake-sagemaker", daemon=True).start()
        return f"http://{host}:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.stopped = True
