"""The core every analysis section shares: input adapters (:mod:`inspector.core.adapters`), and beside
them the statistics merged across ranks. Imports nothing heavy: each submodule is imported where used."""
