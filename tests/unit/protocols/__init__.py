"""Tests of federation.protocols."""
