"""Tests of the reference Learning server (sandbox/learning)."""
