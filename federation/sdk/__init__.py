"""The analyst SDK: :func:`connect`, :class:`Client`, :class:`QueryResult`, and the
model results (:class:`LinearRegressionResult`, :class:`LogisticRegressionResult`,
:class:`Description`)."""

from federation.sdk.client import Client, connect
from federation.sdk.describe import Description
from federation.sdk.logistic import LogisticRegressionResult
from federation.sdk.models import LinearRegressionResult
from federation.sdk.result import QueryResult

__all__ = [
    "Client",
    "Description",
    "LinearRegressionResult",
    "LogisticRegressionResult",
    "QueryResult",
    "connect",
]
