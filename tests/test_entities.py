"""The entity registry (sis_learning.entities) is consistent with the code that reads it."""

from __future__ import annotations

from sis_learning import entities
from sis_learning.config import MAPPINGS_DIR


def test_every_source_entity_has_its_staged_table_extract_function_and_page_size_resource():
    from sis_learning.extract import ENTITY_EXTRACTS, PAGE_SIZE_RESOURCE
    from sis_learning.import_tasks import EXTRACT_ENTITIES
    from sis_learning.staging.source import STAGED_SOURCE_TABLES

    names = [entity.name for entity in entities.SOURCE_ENTITIES]
    assert list(STAGED_SOURCE_TABLES) == names
    assert list(ENTITY_EXTRACTS) == names
    assert set(PAGE_SIZE_RESOURCE) == set(names)
    assert tuple(name for name in names if name != "schools") == EXTRACT_ENTITIES
    for entity in entities.SOURCE_ENTITIES:
        assert ENTITY_EXTRACTS[entity.name].__name__ == entity.extract_function
        assert STAGED_SOURCE_TABLES[entity.name].__name__ == entity.staged_model
        columns = set(STAGED_SOURCE_TABLES[entity.name].__table__.columns.keys())
        assert entity.preparation_columns <= columns, entity.name


def test_validated_and_blocked_entities_are_registered_source_entities_or_parent_links():
    known = set(entities.SOURCE_ENTITY) | {"parent_links"}
    assert set(entities.VALIDATED_ENTITIES) <= known
    assert set(entities.BLOCKED_LABELS) <= set(entities.VALIDATED_ENTITIES)
    assert all(entities.BLOCKED_LABELS.values())


def test_learning_entities_fields_and_references_are_columns_of_their_tables():
    from sis_learning.staging.learning import LEARNING_TABLES

    assert list(LEARNING_TABLES) == [entity.name for entity in entities.LEARNING_ENTITIES]
    for entity in entities.LEARNING_ENTITIES:
        columns = set(LEARNING_TABLES[entity.name].__table__.columns.keys())
        fields = set(entity.key_fields) | set(entity.compared_fields) | set(entity.sent_only_fields)
        assert fields <= columns, (entity.name, fields - columns)
        for reference in entity.references:
            assert reference.entity in entities.LEARNING_ENTITY
            assert reference.field in columns
            assert reference.user_type_field in (None, *columns)


def test_the_load_order_puts_what_a_row_refers_to_first_and_deactivates_users_last():
    from sis_learning.load import PHASES

    upserts = [phase.entity for phase in PHASES if phase.method == "upsert"]
    assert sorted(upserts) == sorted(entity.name for entity in entities.LEARNING_ENTITIES)
    for entity in entities.LEARNING_ENTITIES:
        for reference in entity.references:
            assert upserts.index(reference.entity) < upserts.index(entity.name), (entity.name, reference)
    removes = [index for index, phase in enumerate(PHASES) if phase.method == "remove"]
    deactivations = [index for index, phase in enumerate(PHASES) if phase.method == "deactivate"]
    assert [PHASES[index].entity for index in removes] == ["rosters", "parent_links"]
    assert [PHASES[index].entity for index in deactivations] == ["users"]
    # a user is deactivated only after the rosters and links that point at them are removed
    assert max(removes) < min(deactivations)


def test_every_mapping_spec_has_its_file_and_registered_entities():
    from sis_learning.transform import SPEC_ENTITIES, SPEC_SOURCES

    for spec in entities.MAPPING_SPECS:
        assert (MAPPINGS_DIR / f"{spec.name}.csv").is_file(), spec.name
        assert spec.learning_entity in entities.LEARNING_ENTITY
        assert spec.source_entity in entities.SOURCE_ENTITY
    assert {spec.name: spec.learning_entity for spec in entities.MAPPING_SPECS} == SPEC_ENTITIES
    assert {spec.name: spec.source_entity for spec in entities.MAPPING_SPECS} == SPEC_SOURCES
    # every Learning entity is filled by at least one spec
    assert set(SPEC_ENTITIES.values()) == set(entities.LEARNING_ENTITY)


def test_a_reference_key_is_the_referred_rows_key():
    roster, parent_link = entities.LEARNING_ENTITY["rosters"], entities.LEARNING_ENTITY["parent_links"]
    class_ref, user_ref = roster.references
    payload = {"class_id": 51, "user_type": "S", "user_id": 7}
    assert class_ref.key(payload) == "51"
    assert user_ref.key(payload) == "S:7"
    assert [reference.key({"parent_id": 3, "child_id": 7}) for reference in parent_link.references] == ["P:3", "S:7"]
