"""The interface the transport services code against: names and signatures stay put."""

from __future__ import annotations

import inspect

import federation.protocols.secagg as secagg
from federation.protocols.secagg import CoordinatorSecAgg, NodeSecAgg, make_params

INTERFACE = {
    "SecAggParams",
    "make_params",
    "NodeSecAgg",
    "CoordinatorSecAgg",
    "SecAggResult",
    "Stage",
    "KeyAdvertisement",
    "KeyRoster",
    "ShareBundle",
    "ShareDelivery",
    "MaskedInput",
    "UnmaskRequest",
    "UnmaskResponse",
    "ConsistencyRequest",
    "ConsistencySignature",
    "PublicKeys",
    "DEFAULT_DROPOUT_TOLERANCE",
    "MAX_SLOTS",
}


def test_interface_is_exported() -> None:
    assert set(secagg.__all__) >= INTERFACE
    for name in secagg.__all__:
        assert hasattr(secagg, name), name
    assert secagg.MAX_SLOTS == 2**15


def test_signatures() -> None:
    params = inspect.signature(make_params).parameters
    assert list(params)[:3] == ["job_id", "slots", "vector_length"]
    assert params["dropout_tolerance"].kind is inspect.Parameter.KEYWORD_ONLY
    assert params["dropout_tolerance"].default == secagg.DEFAULT_DROPOUT_TOLERANCE
    node = inspect.signature(NodeSecAgg).parameters
    assert list(node) == ["params", "slot", "sign", "verify"]
    assert node["sign"].kind is inspect.Parameter.KEYWORD_ONLY
    for method in ("advertise_keys", "share_keys", "mask_input", "consistency", "unmask", "abort"):
        assert callable(getattr(NodeSecAgg, method))
    for method in ("expected", "complete", "receive", "advance", "result", "abort"):
        assert callable(getattr(CoordinatorSecAgg, method))
    assert isinstance(inspect.getattr_static(NodeSecAgg, "stage"), property)
    assert isinstance(inspect.getattr_static(CoordinatorSecAgg, "stage"), property)
