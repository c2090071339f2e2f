"""The S3-compatible target: ``storage`` (the Storage), ``upload`` (the streaming multipart
upload), ``errors`` (botocore errors -> the error tree). The only package that imports
boto3/botocore."""

from __future__ import annotations

from dbcrate.storage.s3.storage import S3Storage

__all__ = ["S3Storage"]
