"""Edits of the manifests from the API, as changes of the manifest files (pure: text in, text out).

- :mod:`~dsfleet.reconciler.editing.placement`: which file a new object goes to.
- :mod:`~dsfleet.reconciler.editing.documents`: a file's documents; replace, add or remove one object with a
  ruamel.yaml round trip of its own document only (every other line of the file kept byte for byte).
- :mod:`~dsfleet.reconciler.editing.versions`: the version (ETag) of an object.
- :mod:`~dsfleet.reconciler.editing.checks`: the whole manifest set, with an edit applied, judged in memory
  by the loader, schemas and rules of ``dsfleet validate``.

Writing the files and committing them is the caller's (:mod:`dsfleet.reconciler.api.routes.manifests`,
:mod:`dsfleet.reconciler.loading.gitwrite`).
"""
