"""What a run leaves on disk, and how it is read back safely.

- :mod:`~prunekit.storage.rundir`: ``RunDir``, the one owner of a run directory's files
  (``result.json``, ``model.json``, ``model.safetensors``).
- :mod:`~prunekit.storage.saving`: a run directory saved as a whole (with checksums) and
  loaded back with every check.
- :mod:`~prunekit.storage.modelfile`: ``model.json`` + ``model.safetensors`` written, and
  checked against ceilings before anything is allocated.
- :mod:`~prunekit.storage.atomic`: atomic single-file writes and the whole-directory
  stage/commit/recover.
- :mod:`~prunekit.storage.outdir`: an output directory checked before any work.
- :mod:`~prunekit.storage.userio`: ``prunekit.save`` / ``prunekit.load`` for a user's own model.
- :mod:`~prunekit.storage.resize`: a fresh model given a saved (shrunk) model's shapes.
- :mod:`~prunekit.storage.integrity`: the data fingerprint and the sanity checks on
  loaded weights.
- :mod:`~prunekit.storage.record`: the result record's schema tag and versions.

Nothing is imported here, so importing one room does not load the others.
"""
