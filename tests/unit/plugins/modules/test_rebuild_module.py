"""The rebuild module's own code (its logic lives in _rebuild and _redeploy): whether a step changed
the host, and how its errors fail the module."""

from __future__ import annotations

from ansible_collections.lifeboat.docker.plugins.module_utils._common.engine import DockerException
from ansible_collections.lifeboat.docker.plugins.module_utils._rebuild.apply import RebuildError
from ansible_collections.lifeboat.docker.plugins.module_utils._common.runner import failure_message
from ansible_collections.lifeboat.docker.plugins.modules.rebuild import _changed, ladder


def test_restoring_steps_changed_when_a_unit_was_restored_or_an_image_tagged():
    assert _changed("host_paths", [{"action": "present"}, {"action": "restore"}], False)
    assert not _changed("volume_data", [{"action": "present"}], False)
    assert _changed("images", [{"action": "present", "tagged": True}], False)
    assert _changed("images", [{"action": "load"}], False) and not _changed("images", [{"action": "present"}], False)


def test_networks_and_volumes_changed_when_one_was_created():
    assert _changed("networks_volumes", {"networks": [{"action": "present"}], "volumes": [{"action": "create"}]}, False)
    assert not _changed("networks_volumes", {"networks": [{"action": "present"}], "volumes": []}, False)


def test_databases_changed_when_created_started_or_restored_and_in_check_mode_when_it_would_be():
    assert _changed("databases", [{"action": "restored"}], False)
    assert _changed("databases", [{"action": "present", "started": True}], False)
    assert not _changed("databases", [{"action": "start and restore"}], False)
    assert _changed("databases", [{"action": "start and restore"}], True)


def test_services_changed_unless_every_one_is_present_and_other_steps_never():
    assert _changed("services", [{"action": "present"}, {"action": "create"}], False)
    assert not _changed("services", [{"action": "present"}], False)
    assert not _changed("plan", {}, False)


def test_a_steps_failure_names_the_step():
    assert failure_message(RebuildError("volume x is in use"), ladder("services"), "rebuild step services") == \
        ("volume x is in use", False)
    assert failure_message(DockerException("boom"), ladder("services"), "rebuild step services")[0] == \
        "the Docker engine failed a request during step services: boom; check the engine's log"
    assert failure_message(KeyError("k"), ladder("images"), "rebuild step images")[0] == \
        "rebuild step images failed unexpectedly: 'k'"
