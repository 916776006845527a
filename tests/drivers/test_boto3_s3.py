"""boto3, unmodified, on a local S3: moto's S3 (servers/slow_s3.py), 0.2 s per GET in the server.

moto answers at once, so the server adds the wait itself: its WSGI app sleeps 0.2 s before each
GET (PUTs are not delayed, so the set-up stays fast). 50 fibers share one client (botocore's
urllib3 pool, 50 connections) and each reads back its own object.
"""

from __future__ import annotations

from typing import Any

from drivers_support import require_module


def test_get_object_concurrently(slow_s3: Any, concurrently: Any) -> None:
    boto3 = require_module("boto3")
    from botocore.config import Config

    s3 = boto3.client(
        "s3",
        endpoint_url=slow_s3.url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(max_pool_connections=50, s3={"addressing_style": "path"}),
    )

    def setup() -> None:
        s3.create_bucket(Bucket="unknot")
        for i in range(50):
            s3.put_object(Bucket="unknot", Key=f"object-{i}", Body=f"content {i}".encode())

    def work(i: int) -> Any:
        return s3.get_object(Bucket="unknot", Key=f"object-{i}")["Body"].read().decode()

    outcome = concurrently(work, setup=setup)
    assert outcome.results == [f"content {i}" for i in range(50)]
    s3.close()
