"""Fuzz tests: every RPC, generated and mutated input, within a fixed CI budget."""
