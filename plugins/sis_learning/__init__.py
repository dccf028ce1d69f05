"""PowerSchool SIS -> PowerSchool Learning: the pipeline package.

Modules read like the flow: ``config`` (district YAML), ``hooks`` (PowerSchool, Learning),
``extract``, ``validate``, ``mapping``/``transform``, ``diff``, ``load``, ``report``,
``grade_push``, and ``staging`` (the SQLAlchemy models of the staged tables). Every
module takes plain arguments and returns plain data, so tests call it without a
scheduler; DAG files in ``dags/`` only wire these together.
"""
