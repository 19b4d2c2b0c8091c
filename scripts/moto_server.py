"""moto's server, with one fix to its ECS answers: DescribeTasks returns a container's `cpu`
and `memory` as numbers where the ECS API reference has strings, and strict clients (the AWS
SDK for Rust, which Shoal's ECS discovery uses) refuse the whole answer. Everything else is
moto as installed.

Usage: moto_server.py [moto_server arguments], e.g. -H 127.0.0.1 -p 5000
"""

import sys

import moto.ecs.models as ecs_models
from moto.server import main

_container_init = ecs_models.Container.__init__


def _container_init_with_api_types(self, *args, **kwargs):
    _container_init(self, *args, **kwargs)
    for attr in ("cpu", "memory"):
        value = getattr(self, attr, None)
        if isinstance(value, int):
            setattr(self, attr, str(value))


ecs_models.Container.__init__ = _container_init_with_api_types

if __name__ == "__main__":
    main(sys.argv[1:])
