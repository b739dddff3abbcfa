"""Tests of federation.crypto."""
