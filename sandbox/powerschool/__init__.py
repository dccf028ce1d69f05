"""The PowerSchool SIS sandbox: an HTTPS API simulator and a district generator.

It stands in for a district's PowerSchool server (the source document's "PowerSchool SIS
v10.1+" with the PowerSchool Learning plugin) so the pipeline can be developed, tested and
demonstrated with no account anywhere. The pipeline never imports this package; tests and
scripts start it with ``sandbox.powerschool.testing.running_powerschool`` or
``python -m sandbox.powerschool``. docs/sandbox-powerschool.md documents it.
"""
