"""Tests of the PQL front end (parser, checker, conversion, CLI)."""
