"""Policies: get, set, and a bad value refused with the old policy kept."""
import numpy as np
import pytest

import tierkv


def test_get_and_set_policy(client, namespace):
    before = client.get_policy(namespace)
    assert before["retriever"] and before["trigger"] == "every"
    after = client.set_policy(namespace, {"retriever": "mean", "trigger": "every_n", "trigger_every": 2})
    assert after["retriever"] == "mean" and after["trigger"] == "every_n" and after["trigger_every"] == 2
    assert client.get_policy(namespace) == after


def test_a_bad_value_is_refused_and_the_old_policy_stays(client, namespace):
    before = client.get_policy(namespace)
    with pytest.raises(tierkv.InvalidArgument, match="trigger"):
        client.set_policy(namespace, {"retriever": "mean", "trigger": "sometimes"})
    with pytest.raises(tierkv.InvalidArgument, match="no_such_field"):
        client.set_policy(namespace, {"no_such_field": 1})
    with pytest.raises(tierkv.InvalidArgument, match="dict"):
        client.set_policy(namespace, "retriever=mean")
    assert client.get_policy(namespace) == before  # all or nothing
    with pytest.raises(tierkv.NotFound):
        client.get_policy("no-such-namespace")


def test_the_write_policy_shows_in_puts_durable_flag(client, namespace):
    with client.open_channel(namespace) as ch:
        block = np.zeros(ch.block_shape, np.float32)
        assert ch.put(1, 0, 0, block) is False  # write-back: acknowledged before the disk
        assert client.set_policy(namespace, {"write": "write-through"})["write"] == "write-through"
        assert ch.put(1, 0, 1, block) is True
        assert ch.put(1, 1, 0, np.stack([block, block])) is True
