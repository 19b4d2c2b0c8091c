"""moto's server, with its ECS API brought closer to the real one (Amazon ECS API Reference)
where Shoal's ECS discovery depends on it; everything else is moto as installed:

- DescribeTasks returned a container's `cpu` and `memory` as numbers where the API has
  strings, and strict clients (the AWS SDK for Rust) refuse the whole answer;
- ListTasks returned every task at once: the API pages by `maxResults` (1-100, default 100)
  with `nextToken`;
- DescribeTasks took any number of tasks: the API takes at most 100.

Usage: moto_server.py [moto_server arguments], e.g. -H 127.0.0.1 -p 5000
"""

import sys

import moto.ecs.exceptions as ecs_exceptions
import moto.ecs.models as ecs_models
import moto.ecs.responses as ecs_responses
from moto.core.responses import ActionResult
from moto.server import main

_container_init = ecs_models.Container.__init__


def _container_init_with_api_types(self, *args, **kwargs):
    _container_init(self, *args, **kwargs)
    for attr in ("cpu", "memory"):
        value = getattr(self, attr, None)
        if isinstance(value, int):
            setattr(self, attr, str(value))


ecs_models.Container.__init__ = _container_init_with_api_types

_list_tasks = ecs_responses.EC2ContainerServiceResponse.list_tasks
_describe_tasks = ecs_responses.EC2ContainerServiceResponse.describe_tasks


def _list_tasks_paged(self):
    result = _list_tasks(self)
    arns = result.result["taskArns"]
    size = int(self._get_param("maxResults") or 100)
    if not 1 <= size <= 100:
        raise ecs_exceptions.InvalidParameterException("maxResults must be between 1 and 100")
    start = int(self._get_param("nextToken") or 0)
    page = {"taskArns": arns[start : start + size]}
    if start + size < len(arns):
        page["nextToken"] = str(start + size)
    return ActionResult(page)


def _describe_at_most_100(self):
    if len(self._get_param("tasks", [])) > 100:
        raise ecs_exceptions.InvalidParameterException(
            "Tasks cannot be longer than 100 elements"
        )
    return _describe_tasks(self)


ecs_responses.EC2ContainerServiceResponse.list_tasks = _list_tasks_paged
ecs_responses.EC2ContainerServiceResponse.describe_tasks = _describe_at_most_100

if __name__ == "__main__":
    main(sys.argv[1:])
