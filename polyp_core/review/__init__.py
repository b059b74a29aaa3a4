"""Blind expert review: accounts, studies, the reviewer's desk, statistics.

Submodules: ``accounts`` (sign-in, roles), ``studies`` (build from pools, close),
``desk`` (queue, image by token, rate; admin views), ``blind`` (what a browser receives),
``stats`` (reader-study statistics and CSV export).
"""
