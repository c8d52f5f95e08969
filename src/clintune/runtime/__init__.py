"""The process around the work: safe file writing, output guards, the memory allocator.

Imports nothing of clintune's but ``clintune.errors``; every other layer may use it.
"""
