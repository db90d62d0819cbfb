"""W1-W5 as plans: which sockets each load-generator process opens, on which replica, and who publishes."""

from __future__ import annotations

from dataclasses import dataclass, field

from benchmarks.clients import ConnSpec
from benchmarks.loadgen import PubSpec, WorkerPlan
from benchmarks.wire import chat_url, graphql_url

WORKLOADS = ("W1", "W2", "W3", "W4", "W5", "W6", "W7")
DESCRIPTIONS = {
    "W1": "fan-out: 1 room, N subscribers over the replicas, closed-loop publisher",
    "W2": "latency: fixed-rate publisher on replica A, N subscribers on replica B",
    "W3": "idle connections on one replica: RSS per connection, connects/s",
    "W4": "many rooms × 2 members (one per replica), round-robin closed-loop publishers",
    "W5": "W1 through GraphQL chatMessage subscriptions (graphql-transport-ws)",
    "W6": "many idle connections on one replica: RSS per connection, time to connect all, heartbeat CPU",
    "W7": "reconnect storm: SIGKILL replica A holding N clients; they resume with since on replica B",
}
HERALD_ONLY = {"W5", "W6", "W7"}


@dataclass
class Options:
    duration: float = 5.0
    subscribers: int = 200
    idle: int = 2000
    idle_rooms: int = 100
    rooms: int = 500
    rate: float = 500.0
    size: int = 100
    window: int = 4
    room_window: int = 16
    workers: int = 2
    client: str = "picows"
    drain_timeout: float = 5.0
    quiet: float = 1.0
    crowd: int = 10_000  # W6 idle connections
    heartbeat_s: float = 1.0  # W6: the replica's HERALD_HEARTBEAT_S, so a short window holds several rounds
    heartbeat_window: float = 5.0  # W6: seconds of idle CPU measured
    storm: int = 5000  # W7 clients on the replica that is killed
    storm_rooms: int = 50
    storm_rate: float = 100.0  # W7 messages/s published (on replica B) across the rooms
    storm_drain: float = 180.0  # W7: how long the resumed clients get to catch up after the publishing window


@dataclass
class Workload:
    name: str
    plans: list[WorkerPlan]
    duration: float
    idle: bool = False  # W3: connect, measure, close; nothing is published
    heartbeat_window: float = 0.0  # W6: after connecting, measure this long of idle (heartbeat) CPU
    heartbeat_s: float = 0.0
    kill_after: float = 0.0  # W7: SIGKILL the first replica this long into the publishing window
    notes: list[str] = field(default_factory=list)

    @property
    def connections(self) -> int:
        return sum(len(p.conns) for p in self.plans)


def build(name: str, opts: Options, ports: list[int]) -> Workload:
    plans = [
        WorkerPlan(i, [], size=opts.size, client=opts.client, drain_timeout=opts.drain_timeout, quiet=opts.quiet)
        for i in range(opts.workers)
    ]
    a, b = ports[0], ports[-1]
    if name == "W1":
        for i in range(opts.subscribers):
            _add(plans[i % opts.workers], ConnSpec(chat_url(_port(ports, i, opts), "w1", f"s{i}"), "w1", True))
        _publisher(plans[0], ConnSpec(chat_url(a, "w1", "pub"), "w1", False), window=opts.window)
        _ack_from_far_subscriber(plans[0], b)
        _sample_latency(plans, 7)
    elif name == "W2":
        for i in range(opts.subscribers):
            _add(plans[i % opts.workers], ConnSpec(chat_url(b, "w2", f"s{i}"), "w2", True))
        _publisher(plans[0], ConnSpec(chat_url(a, "w2", "pub"), "w2", False), rate=opts.rate)
    elif name == "W3":
        for i in range(opts.idle):
            room = f"idle{i % opts.idle_rooms}"
            _add(plans[i % opts.workers], ConnSpec(chat_url(a, room, f"u{i}"), room, False))
    elif name == "W4":
        senders: list[list[int]] = [[] for _ in plans]
        for member in range(2):
            for j in range(opts.rooms):
                room, port, w = f"w4-{j}", ports[member % len(ports)], j % opts.workers
                spec = ConnSpec(chat_url(port, room, f"m{j}-{member}"), room, True, acks=True)
                senders[w].append(_add(plans[w], spec))
        for plan, conns in zip(plans, senders, strict=True):
            if conns:
                plan.publishers.append(PubSpec(conns, window=opts.room_window))
        _sample_latency(plans, 7)
    elif name == "W6":
        for i in range(opts.crowd):
            room = f"crowd{i % opts.idle_rooms}"
            _add(plans[i % opts.workers], ConnSpec(chat_url(a, room, f"u{i}"), room, False))
    elif name == "W7":
        for i in range(opts.storm):
            room = f"storm{i % opts.storm_rooms}"
            spec = ConnSpec(chat_url(a, room, f"s{i}"), room, True, failover=chat_url(b, room, f"s{i}"))
            _add(plans[i % opts.workers], spec)
        for j in range(opts.storm_rooms):
            room = f"storm{j}"
            plan = plans[j % opts.workers]
            _publisher(
                plan, ConnSpec(chat_url(b, room, f"pub{j}"), room, False), rate=opts.storm_rate / opts.storm_rooms
            )
    elif name == "W5":
        for i in range(opts.subscribers):
            spec = ConnSpec(graphql_url(_port(ports, i, opts)), "w5", True, graphql=True)
            _add(plans[i % opts.workers], spec)
        _publisher(plans[0], ConnSpec(chat_url(a, "w5", "pub"), "w5", False), window=opts.window)
        _ack_from_far_subscriber(plans[0], b)
        _sample_latency(plans, 7)
    else:
        raise ValueError(f"unknown workload {name!r}")
    _mark_leaders(plans)
    workload = Workload(name, [p for p in plans if p.conns], opts.duration, idle=name in ("W3", "W6"))
    if name == "W6":
        workload.heartbeat_window, workload.heartbeat_s = opts.heartbeat_window, opts.heartbeat_s
    if name == "W7":
        workload.kill_after = opts.duration / 3
        for plan in workload.plans:  # resuming thousands of clients on one replica outlasts the window
            plan.drain_timeout, plan.quiet = opts.storm_drain, max(plan.quiet, 15.0)
    return workload


def target_env(name: str, opts: Options) -> dict[str, str]:
    """Settings a workload needs of the servers it runs against."""
    return {"HERALD_HEARTBEAT_S": str(opts.heartbeat_s)} if name == "W6" else {}


def _port(ports: list[int], i: int, opts: Options) -> int:
    """Subscriber i's replica, chosen so that every load-generator process holds subscribers on every replica."""
    return ports[(i // opts.workers) % len(ports)]


def _ack_from_far_subscriber(plan: WorkerPlan, port: int) -> None:
    """The closed loop waits for a sampled subscriber on the last replica, not for the publisher's own echo:
    it reflects the cross-replica path and does not depend on the server echoing to the sender."""
    far = [spec for spec in plan.conns if spec.subscriber and f":{port}/" in spec.url]
    (far or [spec for spec in plan.conns if spec.subscriber])[-1].acks = True


def _add(plan: WorkerPlan, spec: ConnSpec) -> int:
    plan.conns.append(spec)
    return len(plan.conns) - 1


def _publisher(plan: WorkerPlan, spec: ConnSpec, window: int = 0, rate: float = 0.0) -> None:
    plan.publishers.append(PubSpec([_add(plan, spec)], window=window, rate=rate))


def _sample_latency(plans: list[WorkerPlan], mask: int) -> None:
    # Throughput workloads keep one latency sample in 8; W2 keeps all of them.
    for plan in plans:
        plan.lat_mask = mask


def _mark_leaders(plans: list[WorkerPlan]) -> None:
    """The first socket of each (replica, room, kind) across all workers opens alone, before the rest."""
    seen: set[tuple[str, str, bool]] = set()
    for plan in plans:
        for spec in plan.conns:
            key = (spec.url.split("/ws/")[0].split("/graphql")[0], spec.room, spec.graphql)
            if key not in seen:
                seen.add(key)
                spec.leader = True
