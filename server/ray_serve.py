"""`bandmate serve --ray`: the same FastAPI app, REST and WebSocket, as N Ray Serve replicas
behind Ray's HTTP proxy, on one machine or a Ray cluster.

Each replica is a whole server: `create_app(config)` builds it in the replica (its catalog,
its SessionHost and stepper thread, its lifespan, which Ray Serve runs), so a replica's
sessions are batched together exactly as in `bandmate serve`. Ray's proxy (one per node)
picks a replica per connection; a WebSocket is one connection, so its session stays on the
replica that opened it for as long as it streams. A session made over REST (POST
/v1/sessions) lives on whichever replica answered, and a later socket may reach another:
behind Ray, open sessions with the socket's `open` message. `max_ongoing_requests` is the
replica's session cap plus `rest_headroom` (room for REST calls), so the proxy sends a
replica no more open sockets than it holds; with no headroom, exactly --max-sessions.

`ray.init` joins the cluster `RAY_ADDRESS` names, or starts a local Ray instance. Replicas
ask Ray for `--cpus-per-replica` CPUs and `--gpus-per-replica` GPUs, so on a cluster with GPU
workers the scheduler places each replica on a GPU (the replica's backend, auto, then picks
onnxruntime's CUDA provider). Every node must have bandmate installed (`pip install
'bandmate[scale]'`) and the checkpoints at the same --models-dir path.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from dataclasses import dataclass
from typing import Any

from ray import serve

from server.config import ServerConfig

APP_NAME = "bandmate"
SHUTDOWN_SECONDS = 30.0


@dataclass(frozen=True)
class RayOptions:
    replicas: int = 2
    cpus_per_replica: float = 1.0
    gpus_per_replica: float = 0.0
    rest_headroom: int = 16  # concurrent REST requests a replica takes beside its sockets


@serve.ingress()
class BandmateReplica:
    """One replica: the server's config, and its app built when the replica starts."""

    def __init__(self, config_json: str):
        self.config = ServerConfig.model_validate_json(config_json)
        # As `bandmate serve` does: the stepper needs the GIL back within a fraction of a hop.
        sys.setswitchinterval(0.0005)

    def __serve_build_asgi_app__(self) -> Any:
        from server.app import create_app

        return create_app(self.config)


def application(config: ServerConfig, options: RayOptions) -> Any:
    """The bound Serve application: `options.replicas` replicas of the app for `config`."""
    actor: dict[str, float] = {"num_cpus": options.cpus_per_replica}
    if options.gpus_per_replica:
        actor["num_gpus"] = options.gpus_per_replica
    deployment = serve.deployment(
        name="Bandmate",
        num_replicas=options.replicas,
        max_ongoing_requests=config.max_sessions + options.rest_headroom,
        ray_actor_options=actor,
    )(BandmateReplica)
    return deployment.bind(config.model_dump_json())


def serve_on_ray(config: ServerConfig, options: RayOptions) -> None:
    """Start (or join) Ray, run the application on the proxy at config.host:config.port,
    and block until SIGINT or SIGTERM; then take the application and a local Ray down."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report from our runs
    joining = bool(os.environ.get("RAY_ADDRESS"))
    if joining:
        ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)
    else:
        ray.init(include_dashboard=False, log_to_driver=False)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        serve.start(http_options={"host": config.host, "port": config.port})
        serve.run(application(config, options), name=APP_NAME, route_prefix="/")
        where = f"the Ray cluster at {os.environ['RAY_ADDRESS']}" if joining else "local Ray"
        print(f"bandmate serving http://{config.host}:{config.port}/ through Ray Serve on "
              f"{where}: {options.replicas} replicas, {options.cpus_per_replica:g} CPU and "
              f"{options.gpus_per_replica:g} GPU each; batch window "
              f"{config.batch_window_ms:g} ms", flush=True)  # fmt: skip
        stop.wait()
    finally:
        # Taking Serve down waits on Ray's own processes; if one died first (a signal sent
        # to the whole process group reaches the raylet too), it would wait for ever.
        watchdog = threading.Timer(SHUTDOWN_SECONDS, os._exit, (1,))
        watchdog.daemon = True
        watchdog.start()
        if joining:
            serve.delete(APP_NAME)  # the cluster's Serve stays, for its other applications
        else:
            serve.shutdown()
        ray.shutdown()
        watchdog.cancel()
