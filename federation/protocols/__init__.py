"""Privacy protocols composed from :mod:`federation.crypto`, as I/O-free state machines.

- :mod:`federation.protocols.secagg`: SecAgg+ secure aggregation of uint64 vectors.
"""
