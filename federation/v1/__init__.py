"""Generated protobuf code for the federation.v1 wire contract. Do not edit."""
