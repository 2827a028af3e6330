"""STAND-INS, not models: small HTTP servers that speak the vLLM / OpenAI wire format.

They answer by simple text rules so the tests, the demo and the benchmarks can run the real proxy over
real HTTP on a machine with no GPU and no network. They are not classifiers and never judge content.
"""
