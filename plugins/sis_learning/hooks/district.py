"""The one place a district's API clients are built from its configuration.

Used by the import (extract reads PowerSchool, load writes Learning) and by grade push
(reads Learning's feed, writes PowerTeacher), so both talk to a district's services with
the same request limits, timeouts and retries from its YAML. Imports are lazy: the DAG
files import the task modules at parse time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sis_learning.config import DistrictConfig
    from sis_learning.hooks.learning import LearningHook
    from sis_learning.hooks.powerschool import PowerSchoolHook
    from sis_learning.hooks.powerteacher import PowerTeacherClient


def powerschool_hook(config: DistrictConfig) -> PowerSchoolHook:
    """The district's PowerSchool hook, with its request limits from the district YAML.

    :param config: the district's validated configuration (``powerschool.connection_id``,
        ``max_concurrent_requests``, ``request_timeout_seconds``, ``max_retries``).
    """
    from sis_learning.hooks.http_client import RetryPolicy
    from sis_learning.hooks.powerschool import PowerSchoolHook

    settings = config.powerschool
    return PowerSchoolHook(
        settings.connection_id,
        max_concurrent_requests=settings.max_concurrent_requests,
        timeout_seconds=settings.request_timeout_seconds,
        retry_policy=RetryPolicy(max_retries=settings.max_retries),
    )


def learning_hook(config: DistrictConfig) -> LearningHook:
    """The district's Learning hook (``learning.connection_id`` of its YAML)."""
    from sis_learning.hooks.learning import LearningHook

    return LearningHook(config.learning.connection_id)


def powerteacher_client(config: DistrictConfig) -> PowerTeacherClient:
    """PowerTeacher's gradebook calls, over the district's PowerSchool hook."""
    from sis_learning.hooks.powerteacher import PowerTeacherClient

    return PowerTeacherClient(powerschool_hook(config))
