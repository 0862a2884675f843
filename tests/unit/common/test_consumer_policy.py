from __future__ import annotations

from reelvault_common.messaging.topology import ConsumerPolicy, Topology


def test_backoff_starts_with_ack_wait_because_the_server_takes_it_as_ack_wait() -> None:
    config = ConsumerPolicy(
        "d", ("s",), ack_wait_s=30, backoff_s=(60, 120), max_deliver=10
    ).to_config()
    assert config.backoff == [30, 60, 120]
    assert config.ack_wait == 30


def test_backoff_is_trimmed_below_max_deliver() -> None:
    config = ConsumerPolicy(
        "d", ("s",), ack_wait_s=5, backoff_s=(10, 20, 40), max_deliver=3
    ).to_config()
    assert config.backoff == [5, 10]
    assert ConsumerPolicy("d", ("s",), backoff_s=(10,), max_deliver=2).to_config().backoff is None


def test_unlimited_deliveries_use_plain_ack_wait() -> None:
    # nats-server 2.9 refuses a backoff list together with unlimited deliveries.
    config = ConsumerPolicy(
        "d", ("s",), ack_wait_s=5, backoff_s=(10, 20), max_deliver=-1
    ).to_config()
    assert (config.backoff, config.ack_wait) == (None, 5)


def test_several_filter_subjects_use_the_list_field() -> None:
    one = ConsumerPolicy("d", ("a",)).to_config()
    two = ConsumerPolicy("d", ("a", "b")).to_config()
    assert (one.filter_subject, one.filter_subjects) == ("a", None)
    assert (two.filter_subject, two.filter_subjects) == (None, ["a", "b"])


def test_names_derive_from_the_namespace() -> None:
    topology = Topology("my-ns")
    assert topology.stream == "MY_NS_VIDEOS"
    assert topology.subject("video.stored", "acme") == "my-ns.events.acme.video.stored"
    assert topology.durable("archiver", "completed") == "my-ns-archiver-completed"
    assert topology.kv_bucket("generator", "jobs") == "my_ns_generator_jobs"
    assert len(topology.stream_subjects) == len(set(topology.stream_subjects)) == 13
