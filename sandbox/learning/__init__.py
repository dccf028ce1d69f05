"""The reference PowerSchool Learning server (sandbox): the Learning API contract, implemented.

PowerSchool Learning has no public write API, so the project defines one
(docs/architecture.md, "The Learning API"; docs/learning-openapi.json) and this package
implements it with Learning's documented behaviour from the source document: upsert by
import id, sticky SSO authentication, unique logins, no notifications to imported users,
per-row results, and a gradebook with a change feed for grade push.

Start it with ``python -m sandbox.learning`` (see docs/sandbox-learning.md), or from a
test with ``sandbox.learning.testing.running_learning()``. The pipeline never imports
this package; it reaches the server over HTTPS only.
"""
