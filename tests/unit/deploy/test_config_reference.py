"""docs/deploy.md's configuration reference is the one the services' settings classes generate."""

from __future__ import annotations

import pytest

from tests.unit.deploy.files import DEPLOY_DOC, SERVICES, config_reference, env_fields


def test_the_committed_reference_matches_the_settings_classes() -> None:
    classes = config_reference.settings_classes(strict=True)
    expected = config_reference.replace_block(DEPLOY_DOC.read_text(), config_reference.generate(classes))
    assert DEPLOY_DOC.read_text() == expected, (
        "docs/deploy.md is stale: run `python deploy/config_reference.py --write`"
    )


@pytest.mark.parametrize("service", SERVICES)
def test_every_variable_of_every_service_has_a_default_and_a_meaning(service: str) -> None:
    variables = {v.name: v for v in config_reference.collect({service: config_reference.settings_class(service)})}
    assert set(env_fields(service)) <= set(variables)
    for name in env_fields(service):
        assert variables[name].meaning, f"{name}: add a comment above the field, or an entry in MEANINGS"
        assert variables[name].defaults[service]


def test_a_missing_marker_is_reported_rather_than_the_document_overwritten() -> None:
    with pytest.raises(ValueError, match="markers"):
        config_reference.replace_block("# no markers here\n", config_reference.generate({}))
